"""python -m servers            the registry as a table
python -m servers --json     the registry as JSON (name, module, argv, python, family, lesson, available, ...)
python -m servers serve NAME [server options]   start one server (what `make serve` runs)
python -m servers talk PORT   send what you type to a server, print its echo (`make talk`)

--python SPEC, before any of these, judges (and serves) under another interpreter: 3.13,
python3.12, 3.14t or a path; its venv (.venv-3.13) is built at first use (servers/interpreters.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap

from servers import SERVERS, BY_NAME, interpreters, markdown_table

COLUMNS = f"{'server':18} {'family':14} {'lesson':6} here"


def _table(python=None) -> None:
    """A line per server when piped or logged (for grep); at a terminal, the same columns with
    the model and any reason wrapped beneath, to the terminal's width."""
    interp = interpreters.resolve(python)
    rows = [(s.name, s.family, s.lesson, *s.availability(interp), s.model) for s in SERVERS]
    if not sys.stdout.isatty():
        lines = [f"{COLUMNS} model"]
        lines += [f"{name:18} {family:14} {lesson:6} {'yes' if ok else 'no':4} {model}"
                  + ("" if ok else f"  [unavailable: {reason}]")
                  for name, family, lesson, ok, reason, model in rows]
    else:
        width = max(40, shutil.get_terminal_size().columns - 1)
        indent = " " * 4
        lines = [f"echo servers in the lab, judged for Python {interp.label}", COLUMNS]
        for name, family, lesson, ok, reason, model in rows:
            lines.append(f"{name:18} {family:14} {lesson:6} {'yes' if ok else 'no'}")
            lines += textwrap.wrap(model, width, initial_indent=indent, subsequent_indent=indent)
            if not ok:
                lines += textwrap.wrap(f"unavailable: {reason}", width, initial_indent=indent,
                                       subsequent_indent=indent + "  ", break_on_hyphens=False)
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `python -m servers | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _serve(name: str, rest: list[str], python=None) -> None:
    if name not in BY_NAME:
        sys.stderr.write(f"no server named {name!r}; pick one of: {', '.join(BY_NAME)}\n"
                         "  e.g. make serve SERVER=threads\n")
        sys.exit(2)
    server = BY_NAME[name]
    ok, reason = server.availability(python)
    if not ok:
        sys.stderr.write(f"server {name!r} is not available here: {reason}\n")
        sys.exit(2)
    executable = server.interpreter(python).python
    # Replace this process with the server, so signals (Ctrl-C) reach it directly. No setpgid():
    # under `make serve` the server is in make's process group, the terminal's foreground group,
    # and that is why Ctrl-C reaches it. In a group of its own it would no longer get the
    # terminal's SIGINT, and make, which does get it, would wait for the server forever. So the
    # server is not its own group leader; `ps -o pgid= -p PID` names its group.
    os.execv(executable, [executable, *server.argv, *rest])


def _python_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """--python SPEC (or --python=SPEC) before the command: (SPEC, the rest)."""
    if argv[:1] == ["--python"]:
        if len(argv) < 2:
            sys.stderr.write("--python needs a SPEC: 3.13, python3.12, 3.14t or a path\n")
            sys.exit(2)
        return argv[1], argv[2:]
    if argv[:1] and argv[0].startswith("--python="):
        return argv[0].split("=", 1)[1], argv[1:]
    return None, argv


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    python, argv = _python_option(argv)
    if python is not None:
        try:
            python = interpreters.get(python)  # finds it, builds its venv at first use
        except interpreters.Unavailable as exc:
            sys.stderr.write(f"--python {python}: {exc}\n")
            sys.exit(2)
    if argv[:1] == ["talk"]:
        from servers.talk import main as talk_main
        try:
            sys.exit(talk_main(argv[1:]))
        except KeyboardInterrupt:  # Ctrl-C before the connection was up
            sys.exit(130)
    if argv[:1] == ["serve"]:
        if len(argv) < 2 or argv[1].startswith("-"):
            sys.stderr.write(f"usage: python -m servers serve NAME [options]; NAME is one of: "
                             f"{', '.join(BY_NAME)}\n")
            sys.exit(2)
        _serve(argv[1], argv[2:], python)
        return
    parser = argparse.ArgumentParser(prog="python -m servers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", metavar="SPEC",
                        help="judge availability under this interpreter (3.13, python3.12, a "
                             "path); given first, it also applies to serve")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print the registry as a JSON list")
    group.add_argument("--markdown", action="store_true", help="print the README's table")
    group.add_argument("--names", action="store_true",
                       help="print the names of the servers available here, one per line")
    args = parser.parse_args(argv)
    if args.python is not None:  # given after the listing's own options
        try:
            python = interpreters.get(args.python)
        except interpreters.Unavailable as exc:
            parser.error(f"--python {args.python}: {exc}")
    if args.json:
        print(json.dumps([s.as_dict(python) for s in SERVERS], indent=2))
    elif args.markdown:
        print(markdown_table())
    elif args.names:
        print("\n".join(s.name for s in SERVERS if s.availability(python)[0]))
    else:
        _table(python)


if __name__ == "__main__":
    main()
