"""One self-contained HTML report per run.

This module owns the report page: its data model (`Figure`, `ReportSection`), the HTML it
renders to (a single file with inline CSS and base64-embedded images, so it can be mailed or
opened offline and needs no JavaScript) and writing it atomically. All user-supplied text is
escaped here; callers pass plain strings.
"""

from __future__ import annotations

import base64
import html
import numbers
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lowrankgan.io.artifacts import atomic_write_text

__all__ = ["Figure", "ReportSection", "render_html", "write_report"]

# Small GAN samples are shown at an integer zoom until their short side reaches this many CSS
# pixels, but never wider than _MAX_ZOOMED_PX, so a thumbnail is legible and a grid still fits.
_MIN_DISPLAY_PX = 256
_MAX_ZOOMED_PX = 1024

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body {
  margin: 0 auto; max-width: 1200px; padding: 1.5rem 2rem 3rem;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #1d1d1f; background: #fff;
}
header { border-bottom: 1px solid #ddd; margin-bottom: 1rem; }
h1 { font-size: 1.9rem; margin: 0 0 .5rem; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid #eee; }
nav ol { margin: .3rem 0 1rem; padding-left: 1.4rem; }
nav a, h2 a { color: #0b57d0; text-decoration: none; }
nav a:hover { text-decoration: underline; }
.intro, .text { max-width: 75ch; }
.figures { display: flex; flex-wrap: wrap; gap: 1.25rem; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
figure img {
  display: block; max-width: 100%; height: auto; border: 1px solid #ddd;
  image-rendering: pixelated;
}
figcaption { font-size: .9rem; color: #444; margin-top: .35rem; max-width: 60ch; }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: .95rem; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e3e3e3; text-align: left; }
th { background: #f5f5f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { margin-top: 3rem; padding-top: .8rem; border-top: 1px solid #ddd;
  font-size: .85rem; color: #666; }
"""


@dataclass
class Figure:
    """An image for the report: encoded bytes (PNG, GIF, ...) and a caption under it."""

    caption: str
    data: bytes
    mime: str = "image/png"


@dataclass
class ReportSection:
    """A titled part of the report: paragraphs of text, a row of figures, then a table.

    `table` is a list of rows; column headers are the dict keys in order of first appearance.
    """

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    table: list[dict[str, object]] = field(default_factory=list)


def _paragraphs(text: str, css_class: str) -> str:
    """Plain text -> escaped `<p>` elements: blank lines split paragraphs, newlines break lines."""
    blocks = [block.strip() for block in text.replace("\r\n", "\n").split("\n\n")]
    return "\n".join(
        f'<p class="{css_class}">{html.escape(block).replace(chr(10), "<br>")}</p>'
        for block in blocks
        if block
    )


def _image_size(data: bytes, mime: str) -> tuple[int, int] | None:
    """(width, height) read from a PNG or GIF header, None for anything else."""
    if mime == "image/png" and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if mime == "image/gif" and data[:4] == b"GIF8" and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    return None


def _display_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None or min(size) <= 0:
        return None
    width, height = size
    zoom = -(-_MIN_DISPLAY_PX // min(width, height))
    zoom = max(1, min(zoom, _MAX_ZOOMED_PX // max(width, height)))
    return width * zoom, height * zoom


def _figure_html(figure: Figure) -> str:
    payload = base64.b64encode(figure.data).decode("ascii")
    caption = html.escape(figure.caption)
    size = _display_size(_image_size(figure.data, figure.mime))
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    return (
        "<figure>"
        f'<img src="data:{html.escape(figure.mime)};base64,{payload}" alt="{caption}"{dims}>'
        f"<figcaption>{caption}</figcaption>"
        "</figure>"
    )


def _format_cell(value: object) -> tuple[str, bool]:
    """Table cell text and whether it is numeric (right-aligned)."""
    if value is None:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        number = float(value)
        if 1e-3 <= abs(number) < 1e6:
            # Plain notation for everyday magnitudes: 1230 reads better than 1.23e+03.
            text = np.format_float_positional(
                number, precision=3, unique=False, fractional=False, trim="-"
            )
            return text, True
        return f"{number:.3g}", True
    return str(value), False


def _table_html(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text, numeric = _format_cell(row.get(column))
            css = ' class="num"' if numeric else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<div class="table-wrap"><table>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
        "</table></div>"
    )


def _section_id(index: int) -> str:
    # Index-based ids are unique and valid whatever the titles contain.
    return f"section-{index + 1}"


def render_html(title: str, intro: str, sections: Sequence[ReportSection], footer: str = "") -> str:
    """Render the whole report as one HTML5 page (a string) with everything embedded.

    Layout: header (title, intro), a table of contents linking to `#section-<n>`, then each
    section's text, its figures in a wrapping row with captions, and its table (floats to 3
    significant digits). All text is HTML-escaped.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{html.escape(title)}</h1>",
        _paragraphs(intro, "intro"),
        "</header>",
    ]
    if sections:
        links = "".join(
            f'<li><a href="#{_section_id(i)}">{html.escape(section.title)}</a></li>'
            for i, section in enumerate(sections)
        )
        parts.append(f'<nav aria-label="Contents"><strong>Contents</strong><ol>{links}</ol></nav>')
    parts.append("<main>")
    for i, section in enumerate(sections):
        anchor = _section_id(i)
        parts.append(f'<section id="{anchor}">')
        parts.append(f'<h2><a href="#{anchor}">{html.escape(section.title)}</a></h2>')
        if section.text:
            parts.append(_paragraphs(section.text, "text"))
        if section.figures:
            figures = "\n".join(_figure_html(figure) for figure in section.figures)
            parts.append(f'<div class="figures">\n{figures}\n</div>')
        if section.table:
            parts.append(_table_html(section.table))
        parts.append("</section>")
    parts.append("</main>")
    if footer:
        parts.append(f"<footer>{_paragraphs(footer, 'footer-text')}</footer>")
    parts.extend(["</body>", "</html>"])
    return "\n".join(part for part in parts if part) + "\n"


def write_report(
    path: Path,
    title: str,
    intro: str,
    sections: Sequence[ReportSection],
    footer: str = "",
) -> Path:
    """Render the report and write it atomically to `path` (whose folder must exist)."""
    path = Path(path)
    atomic_write_text(path, render_html(title, intro, sections, footer))
    return path
