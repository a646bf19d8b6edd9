"""A report as blocks, rendered twice: to Markdown (report.md, what `bench compare` prints) and to
HTML (report.html, compare --html). The two renderings come from the same blocks, so they never
say different things, and no HTML is ever parsed back out of our own Markdown.

    doc = [Heading(1, "Bench report"), Paragraph("**What to notice.** epoll led."),
           BulletList(["one", "two"]), Table(["server", "req/s"], [["`epoll`", "41,200"]],
           right={"req/s"}), Figure(chart)]
    to_markdown(doc)                  # the text of report.md
    to_html(doc, figure=draw)         # the body of report.html; draw(chart) -> its HTML

Text inside a block is inline Markdown (`code`, **bold**, [links](#anchor)); the HTML side renders
it with markdown-it-py (a dependency of rich), limited to those three constructs, so nothing else
in a sentence (an asterisk, an underscore, a "<") is read as markup.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

_INLINE = MarkdownIt("zero").enable(["backticks", "emphasis", "link"])


def inline_html(text: str) -> str:
    """Inline Markdown to HTML: '**a** `b`' -> '<strong>a</strong> <code>b</code>'."""
    return _INLINE.renderInline(text)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


# -- The blocks ------------------------------------------------------------------------------------


@dataclass
class Heading:
    level: int  # 1 to 3
    text: str


@dataclass(init=False)
class Paragraph:
    """One paragraph. `lines` are joined by a line break in Markdown and a space in HTML;
    `in_html` replaces the text on the HTML page where the page must say it otherwise (report.md
    links to report.html; the page is it)."""

    lines: list[str]
    in_html: str | None = None

    def __init__(self, *lines: str, in_html: str | None = None) -> None:
        self.lines, self.in_html = list(lines), in_html


@dataclass
class BulletList:
    """Items, each a sentence (a str) or blocks: the first shown on the bullet's line, the rest
    indented beneath it."""

    items: list[str | list]


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]
    right: set[str] = field(default_factory=set)  # the columns aligned right (figures)


@dataclass
class Code:
    text: str
    lang: str = "text"


@dataclass
class Details:
    """Folded away until clicked: <details> in both renderings (GitHub shows it in Markdown)."""

    summary: str
    blocks: list


@dataclass
class Figure:
    """A chart: an image in Markdown, whatever the HTML page draws for it (an interactive figure,
    an inlined SVG)."""

    alt: str
    src: str  # the PNG, relative to the document
    chart: object = None  # what the HTML side draws it from (report/series.Chart)


Block = Heading | Paragraph | BulletList | Table | Code | Details | Figure


# -- Markdown --------------------------------------------------------------------------------------


def md_escape(text: str) -> str:
    """A table cell's text: a "|" would end the cell, a line break the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md(block: Block, indent: str = "") -> str:
    """The block's Markdown, every line of it after `indent` (a list item's two spaces); the
    blank lines between blocks stay empty."""
    if isinstance(block, Heading):
        return f"{indent}{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return "\n".join(indent + line for line in block.lines)
    if isinstance(block, Figure):
        return f"{indent}![{block.alt}]({block.src})"
    if isinstance(block, Code):
        text = block.text.replace("```", "` ` `")  # must not close the fence
        return "\n".join(indent + line for line in [f"```{block.lang}", *text.splitlines(), "```"])
    if isinstance(block, Details):
        return "\n\n".join([f"{indent}<details><summary>{block.summary}</summary>",
                             *(_md(b, indent) for b in block.blocks), f"{indent}</details>"])
    if isinstance(block, Table):
        return "\n".join(indent + line for line in [
            "| " + " | ".join(block.head) + " |",
            "|" + "|".join("---:" if h in block.right else "---" for h in block.head) + "|",
            *("| " + " | ".join(md_escape(v) for v in row) + " |" for row in block.rows)])
    if isinstance(block, BulletList):
        return "\n".join(_md_item(item, indent) for item in block.items)
    raise TypeError(f"not a block: {block!r}")


def _md_item(item: str | list, indent: str) -> str:
    """'- ' before the first block, two more spaces before every further line; an item of several
    blocks is followed by a blank line (a loose item)."""
    blocks = [Paragraph(item)] if isinstance(item, str) else item
    text = "\n\n".join(_md(b, indent + "  ") for b in blocks)
    return f"{indent}- {text[len(indent) + 2:]}" + ("\n" if len(blocks) > 1 else "")


def to_markdown(blocks: list[Block]) -> str:
    """The blocks as Markdown, a blank line between two, ending in a line break."""
    return "\n\n".join(map(_md, blocks)) + "\n"


# -- HTML ------------------------------------------------------------------------------------------


def _html(block: Block, figure: Callable[[Figure], str]) -> str:
    if isinstance(block, Heading):
        return (f'<h{block.level} id="{anchor(block.text)}">{inline_html(block.text)}'
                f'</h{block.level}>')
    if isinstance(block, Paragraph):
        text = block.in_html if block.in_html is not None else " ".join(block.lines)
        return f"<p>{inline_html(text)}</p>"
    if isinstance(block, Figure):
        return figure(block)
    if isinstance(block, Code):
        return f"<pre><code>{htmllib.escape(block.text)}</code></pre>"
    if isinstance(block, Details):
        return "\n".join([f"<details><summary>{block.summary}</summary>",
                          *(_html(b, figure) for b in block.blocks), "</details>"])
    if isinstance(block, Table):
        right = [h in block.right for h in block.head]
        head = "".join(f"<th>{inline_html(h)}</th>" for h in block.head)
        body = "".join("<tr>" + "".join(
            f'<td{" class=r" if right[k] else ""}>{inline_html(md_cell(c))}</td>'
            for k, c in enumerate(row)) + "</tr>" for row in block.rows)
        return (f"<div class=tablewrap><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table></div>")
    if isinstance(block, BulletList):
        return "<ul>" + "".join(
            "<li>" + "\n".join(_html(b, figure) for b in
                               ([Paragraph(item)] if isinstance(item, str) else item)) + "</li>"
            for item in block.items) + "</ul>"
    raise TypeError(f"not a block: {block!r}")


def md_cell(text: str) -> str:
    return str(text).replace("\n", " ").strip()


def no_figure(block: Figure) -> str:
    return f"<p><em>{htmllib.escape(block.alt)}: chart missing</em></p>"


def to_html(blocks: list[Block], figure: Callable[[Figure], str] = no_figure) -> str:
    """The blocks as HTML elements, one a line; `figure(block)` returns a chart's HTML."""
    return "\n".join(_html(b, figure) for b in blocks)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1300px; padding: 0 20px 60px; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
.tablewrap { overflow-x: auto; } table { border-collapse: collapse; font-size: 0.86em; }
th, td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; } td.r { text-align: right; }
th { background: #f3f3f3; position: sticky; top: 0; } .chart { margin: 12px 0; }
.svgchart svg { max-width: 100%; height: auto; }
"""


def page(title: str, body: str, *, head: str = "") -> str:
    """A whole HTML page around `body` in our style; `head` goes last in <head> (a script)."""
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{htmllib.escape(title)}</title><style>{STYLE}</style>{head}</head>"
            f"<body>\n{body}\n</body></html>\n")
