"""python -m servers            the registry as a table
python -m servers --json     the registry as JSON (name, module, argv, family, lesson, available, ...)
python -m servers serve NAME [server options]   start one server (what `make serve` runs)
python -m servers talk PORT   send what you type to a server, print its echo (`make talk`)"""

from __future__ import annotations

import argparse
import json
import os
import sys

from servers import SERVERS, BY_NAME, markdown_table


def _table() -> None:
    rows = [(s.name, s.family, s.lesson, *s.availability(), s.model) for s in SERVERS]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    if Console is None or not sys.stdout.isatty():
        # Piped or without rich: a line per server, for grep and logs (rich would fold the table
        # into 80 columns)
        lines = [f"{'server':18} {'family':14} {'lesson':6} {'here':4} model"]
        lines += [f"{name:18} {family:14} {lesson:6} {'yes' if ok else 'no':4} {model}"
                  + ("" if ok else f"  [unavailable: {reason}]")
                  for name, family, lesson, ok, reason, model in rows]
        try:
            print("\n".join(lines), flush=True)
        except BrokenPipeError:  # `python -m servers | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    table = Table(title="echo servers in the lab", title_justify="left")
    for col in ("server", "family", "lesson", "available here", "model"):
        table.add_column(col, overflow="fold")
    for name, family, lesson, ok, reason, model in rows:
        table.add_row(name, family, lesson, "yes" if ok else f"[red]no[/]: {reason}", model)
    Console().print(table)


def _serve(name: str, rest: list[str]) -> None:
    if name not in BY_NAME:
        sys.stderr.write(f"no server named {name!r}; pick one of: {', '.join(BY_NAME)}\n"
                         "  e.g. make serve SERVER=threads\n")
        sys.exit(2)
    server = BY_NAME[name]
    ok, reason = server.availability()
    if not ok:
        sys.stderr.write(f"server {name!r} is not available here: {reason}\n")
        sys.exit(2)
    # Replace this process with the server, so signals (Ctrl-C) reach it directly. No setpgid():
    # under `make serve` the server is in make's process group, the terminal's foreground group,
    # and that is why Ctrl-C reaches it. In a group of its own it would no longer get the
    # terminal's SIGINT, and make, which does get it, would wait for the server forever. So the
    # server is not its own group leader; `ps -o pgid= -p PID` names its group.
    os.execv(sys.executable, [sys.executable, *server.argv, *rest])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
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
        _serve(argv[1], argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m servers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print the registry as a JSON list")
    group.add_argument("--markdown", action="store_true", help="print the README's table")
    group.add_argument("--names", action="store_true",
                       help="print the names of the servers available here, one per line")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps([s.as_dict() for s in SERVERS], indent=2))
    elif args.markdown:
        print(markdown_table())
    elif args.names:
        print("\n".join(s.name for s in SERVERS if s.available))
    else:
        _table()


if __name__ == "__main__":
    main()
