"""The report's blocks rendered as Markdown and as one self-contained HTML page (plots inline).

A block is one of ``("h", level, text)``, ``("p", text)``, ``("note", text)``, ``("list", [items])``,
``("table", headers, rows)``, ``("img", file name, caption, png bytes)``. Text may use `code` and
**bold**; tables go through the one Markdown table writer (``core/markdown.py``).
"""

from __future__ import annotations

import base64
import html
import math
import re
from typing import Any

from lss_pipeline.core.markdown import markdown_rows

Block = tuple[Any, ...]


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "—" if _missing(x) else f"{100 * x:.{digits}f} %"  # type: ignore[operator]


def fmt_pts(x: float | None, digits: int = 1) -> str:
    return "—" if _missing(x) else f"{x:+.{digits}f}"


def fmt_num(x: float | None, digits: int = 3) -> str:
    return "—" if _missing(x) else f"{x:.{digits}f}"


def fmt_params(x: int | None) -> str:
    return "—" if x is None else f"{x / 1e6:.2f} M"


def fmt_pct_ci(point: float | None, lo: float | None, hi: float | None, digits: int = 1) -> str:
    """``72.4 % (68.1–76.0)``: a fraction and its interval, in percent."""
    if _missing(point):
        return "—"
    if _missing(lo) or _missing(hi):
        return fmt_pct(point, digits)
    return f"{fmt_pct(point, digits)} ({100 * lo:.{digits}f}–{100 * hi:.{digits}f})"  # type: ignore[operator]


def fmt_pts_ci(point: float | None, lo: float | None, hi: float | None, digits: int = 1) -> str:
    """``+3.2 (−1.0 to +7.5)``: percentage points and their interval."""
    if _missing(point):
        return "—"
    if _missing(lo) or _missing(hi):
        return fmt_pts(point, digits)
    return f"{fmt_pts(point, digits)} ({fmt_pts(lo, digits)} to {fmt_pts(hi, digits)})"


def fmt_num_ci(point: float | None, lo: float | None, hi: float | None, digits: int = 3) -> str:
    if _missing(point):
        return "—"
    if _missing(lo) or _missing(hi):
        return fmt_num(point, digits)
    return f"{fmt_num(point, digits)} ({fmt_num(lo, digits)}–{fmt_num(hi, digits)})"


def fmt_counts(counts: list[int] | tuple[int, ...] | None) -> str:
    """Labelled rows per class, Normal/Mild / Moderate / Severe."""
    return "—" if not counts else " / ".join(str(int(c)) for c in counts)


def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            parts.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            parts.append(b[1])
        elif kind == "note":
            parts.append("> " + b[1])
        elif kind == "list":
            parts.append("\n".join(f"- {item}" for item in b[1]))
        elif kind == "table":
            parts.append(markdown_rows(b[1], b[2]))
        elif kind == "img":
            parts.append(f"![{b[2]}]({b[1]})")
        else:
            raise ValueError(f"unknown report block kind {kind!r}")
    return "\n\n".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
blockquote{border-left:4px solid #e0a000;background:#fff8e6;margin:1em 0;padding:0.5em 1em}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}
figure{display:inline-block;margin:0.5em;vertical-align:top;text-align:center}
figure img{max-width:520px;border:1px solid #ddd}
figcaption{font-size:0.85em;color:#555}
"""


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def render_html(blocks: list[Block], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            parts.append(f"<h{b[1]}>{_inline_html(b[2])}</h{b[1]}>")
        elif kind == "p":
            parts.append(f"<p>{_inline_html(b[1])}</p>")
        elif kind == "note":
            parts.append(f"<blockquote>{_inline_html(b[1])}</blockquote>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline_html(str(h))}</th>" for h in b[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{_inline_html(str(v))}</td>" for v in r) + "</tr>" for r in b[2]
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(b[3]).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}">'
                f"<figcaption>{html.escape(b[2])}</figcaption></figure>"
            )
        else:
            raise ValueError(f"unknown report block kind {kind!r}")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
