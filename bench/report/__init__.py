"""The bench's last stage: a run's charts, report.md, report.html and summary exports, redrawn
from its saved files (`python -m bench report RUN_DIR`; bench/report/build.py says what it writes).

Kept free of imports so that `from bench.report import fmt` (the formatters) costs nothing:
build.py pulls in the plotting stacks only when a report is drawn.
"""
