"""A cog helper for docs/08-multiplexed-io.md: the diff of one function between two servers.

    <!-- [[[cog from lessons._08_diff import function_diff
    cog.out(function_diff("servers/select_server.py", "servers/poll_server.py", "serve")) ]]] -->

Siblings use the same names for the same steps, so the diff of a function shows only what the
model changed. Like lessons.docsync.code, it reads the real files, and cog --check fails when the
page no longer matches them.
"""

from __future__ import annotations

import ast
import difflib

from lessons.docsync import ROOT


def function_source(path: str, name: str) -> list[str]:
    """The lines of function or class ``name`` in ``path`` (decorators included)."""
    source = (ROOT / path).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return source.splitlines()[start - 1:node.end_lineno]
    raise LookupError(f"{path} has no function or class named {name!r}")


def function_diff(old_path: str, new_path: str, name: str, context: int = 2) -> str:
    """A fenced unified diff of ``name`` from ``old_path`` to ``new_path``."""
    lines = difflib.unified_diff(function_source(old_path, name), function_source(new_path, name),
                                 fromfile=f"{old_path}, {name}", tofile=f"{new_path}, {name}",
                                 n=context, lineterm="")
    return "\n```diff\n" + "\n".join(lines) + "\n```\n"
