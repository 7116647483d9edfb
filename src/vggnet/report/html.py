"""The HTML pieces every report is made of: inline CSS, escaped tables, base64 PNGs, one page.
Self-contained on purpose: no JavaScript, no network; a report survives being mailed around."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vggnet.report.rundir import accuracy

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1150px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:30em}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.5em .8em}.muted{color:#777}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def table(headers: list[str], rows: list[list[Any]], left: int = 1, cls: str = "") -> str:
    """An HTML table; the first `left` columns are left-aligned labels. Cells are escaped."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{num(v)}</td>'
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def page(title: str, body: list[str]) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{''.join(body)}</body></html>")


def write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def pct(error: Any) -> str:
    acc = accuracy(error)
    return "–" if acc is None else f"{100 * (1 - acc):.2f}"
