"""A report as a list of blocks, written as Markdown or as a self-contained HTML page.

Blocks: ("h1" | "h2" | "h3", text), ("p", text), ("ul", [text, ...]), ("table", headers, rows),
("img", relative path, alt text). In text, `code` spans become <code> and [text](path) links
<a href> in HTML (Markdown has both already).
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

Block = tuple

_INLINE = re.compile(r"\\([\\`\[\]<>!|&])|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\)")
_MARKUP = re.compile(r"([\\`\[\]<>!|&])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape(text: object) -> str:
    """Text from a file (a class name, a config value, a path) made inert in both outputs:
    control characters shown as ?, the characters that open markup, links, images and code
    backslash-escaped (Markdown shows them as themselves; the HTML writer reads the escapes
    back). Emphasis (_, *) is left: it changes how text looks, never what it does."""
    return _MARKUP.sub(r"\\\1", _CONTROL.sub("?", str(text)))


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for kind, *body in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"{'#' * int(kind[1])} {body[0]}")
        elif kind == "p":
            parts.append(body[0])
        elif kind == "ul":
            parts.append("\n".join(f"- {item}" for item in body[0]))
        elif kind == "table":
            headers, rows = body
            lines = [_md_row(headers), "| " + " | ".join("---" for _ in headers) + " |"]
            lines += [_md_row(row) for row in rows]
            parts.append("\n".join(lines))
        elif kind == "img":
            parts.append(f"![{body[1]}]({body[0]})")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n\n".join(parts) + "\n"


def _md_row(cells) -> str:
    cells = (re.sub(r"(?<!\\)\|", r"\\|", str(c)).replace("\n", " ") for c in cells)
    return "| " + " | ".join(cells) + " |"


def _inline(text: str) -> str:
    text, parts, done = str(text), [], 0
    for match in _INLINE.finditer(text):
        parts.append(html.escape(text[done : match.start()]))
        escaped, code, label, target = match.groups()
        if escaped is not None:
            parts.append(html.escape(escaped))
        elif code is not None:
            parts.append(f"<code>{html.escape(code)}</code>")
        else:
            parts.append(f'<a href="{html.escape(quote(target), quote=True)}">{_inline(label)}</a>')
        done = match.end()
    parts.append(html.escape(text[done:]))
    return "".join(parts)


def code(text: object) -> str:
    """Text from a file shown as a code span: inert in Markdown and HTML alike."""
    return "`" + _CONTROL.sub("?", str(text)).replace("`", "'") + "`"


def link(text: str, target: str) -> str:
    """A link in block text: [text](target), the target a relative path or URL."""
    return f"[{text}]({target})"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
td { font-variant-numeric: tabular-nums; }
td:nth-child(n+2) { white-space: nowrap; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def to_html(blocks: list[Block]) -> str:
    title = next((body[0] for kind, *body in blocks if kind == "h1"), "report")
    parts = []
    for kind, *body in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{_inline(body[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(body[0])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in body[0]) + "</ul>")
        elif kind == "table":
            headers, rows = body
            head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
            lines = ["<table>", f"<tr>{head}</tr>"]
            lines += [
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows
            ]
            parts.append("\n".join([*lines, "</table>"]))
        elif kind == "img":
            src, alt = (html.escape(str(x), quote=True) for x in body)
            parts.append(f'<p><img src="{src}" alt="{alt}"></p>')
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
