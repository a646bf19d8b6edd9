"""python -m bench run [--profile quick|full|smoke] ...   measure servers, write results/<run>/
python -m bench report RUN_DIR                          redraw charts and report.md from saved results
python -m bench compare RUN_A RUN_B [...]               what changed: faster, slower or within noise, per server
python -m bench load --target HOST:PORT ...             the load generator alone, against any echo server
python -m bench headroom [--rounds N]                   the load engines against a minimal C client, interleaved"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else (None, [])
    if command == "run":
        from bench.run.cli import main as run_main
        return run_main(rest)
    if command == "report":
        from bench.report.build import main as report_main
        return report_main(rest)
    if command == "compare":
        from bench.compare import main as compare_main
        return compare_main(rest)
    if command == "load":
        from bench.load import main as load_main
        return load_main(rest)
    if command == "headroom":
        from bench.headroom import main as headroom_main
        return headroom_main(rest)
    if command in ("-h", "--help"):
        print(__doc__)
        return 0
    sys.stderr.write(f"{__doc__}\n\nerror: give a command: run, report, compare, load or headroom"
                     + (f" (not {command!r})" if command else "") + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
