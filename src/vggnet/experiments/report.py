"""One self-contained report.html per run or sweep: inline CSS, PNG plots base64-embedded,
no JavaScript, no network. Opens in any browser and survives being mailed around.

Robust to missing pieces: a run without eval.json (still training, or crashed) renders
with what it has.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from vggnet.errors import ConfigError
from vggnet.experiments import plots
from vggnet.experiments.index import read_rows
from vggnet.experiments.paper import TABLE5, TABLE6, TABLE6_COLUMNS, table3_reference, table5_reference
from vggnet.experiments.runs import accuracy, primary_protocol, read_config, read_json, read_metrics
from vggnet.experiments.summary import NEVER_LEARNED_MARGIN, cell_stats, fmt_pct, mean_std, protocol_stats

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1150px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:30em}
.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.5em .8em}.muted{color:#777}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _esc(value)


def _table(headers: list[str], rows: list[list[Any]], left: int = 1, cls: str = "") -> str:
    """An HTML table; the first `left` columns are left-aligned labels. Cells are escaped."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_num(v)}</td>'
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _page(title: str, body: list[str]) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>{''.join(body)}</body></html>")


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _pct(error: Any) -> str:
    acc = accuracy(error)
    return "–" if acc is None else f"{100 * (1 - acc):.2f}"


# --- a run -------------------------------------------------------------------------------------

def _protocols_section(evaluation: dict[str, Any]) -> list[str]:
    protocols = evaluation.get("protocols") or {}
    if not protocols:
        return []
    rows = [[name, _pct(p.get("top1_error")), _pct(p.get("top5_error")), p.get("n", "")]
            for name, p in protocols.items()]
    return ["<h2>Test protocols</h2><p>Error in % (as in the paper's Table 5).</p>",
            _table(["protocol", "top-1 error", "top-5 error", "n"], rows, cls="protocols")]


WARN_KEYS = ("collapse", "collapse_warning", "warning")


def _analysis_section(evaluation: dict[str, Any]) -> list[str]:
    out: list[str] = []
    analysis = evaluation.get("analysis") or {}
    classes = evaluation.get("classes") or []
    if analysis:
        out.append("<h2>Error analysis</h2>")
        for key in WARN_KEYS:
            if analysis.get(key):
                out.append(f'<p class="warn">{_esc(analysis[key])}</p>')
        share = analysis.get("prediction_share")
        scalars = [[k.replace("_", " "), v] for k, v in analysis.items()
                   if not isinstance(v, (dict, list)) and v is not None and k not in WARN_KEYS]
        if scalars:
            out.append(_table(["", "value"], scalars, cls="analysis"))
        for key, value in analysis.items():
            if key in (*WARN_KEYS, "prediction_share") or not isinstance(value, (dict, list)):
                continue
            if value:
                out.append(f"<h3>{_esc(key.replace('_', ' '))}</h3>{_generic(value)}")
    else:
        share = None
    per_class = evaluation.get("per_class")
    if per_class:
        cols, rows = _per_class_rows(per_class, classes)
        if isinstance(share, list) and len(share) == len(rows):
            cols, rows = cols + ["share of predictions"], [r + [f"{100 * v:.1f}%"] for r, v in zip(rows, share)]
        out += ["<h2>Per class</h2>", _table(["class"] + cols, rows, cls="per-class")]
    return out


def _per_class_rows(per_class: Any, classes: list[str]) -> tuple[list[str], list[list[Any]]]:
    """Accepts {metric: [per class]}, {class: {metric: v}} or [{metric: v}] (one row per class)."""
    wanted = ("precision", "recall", "f1", "support")
    if isinstance(per_class, dict) and all(isinstance(v, list) for v in per_class.values()):
        cols = [k for k in wanted if k in per_class]
        n = max(len(per_class[k]) for k in cols) if cols else 0
        names = classes if len(classes) == n else list(range(n))
        return cols, [[names[i]] + [per_class[k][i] for k in cols] for i in range(n)]
    if isinstance(per_class, dict):
        items = list(per_class.items())
    else:
        items = [(c.get("class", classes[i] if i < len(classes) else i), c) for i, c in enumerate(per_class)]
    cols = [k for k in wanted if any(k in v for _, v in items)]
    return cols, [[name] + [v.get(k, "") for k in cols] for name, v in items]


def _generic(value: Any) -> str:
    """A dict of scalars or a list of dicts/lists as a table; anything else as text."""
    if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
        return _table(["", "value"], [[k, v] for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = list(dict.fromkeys(k for v in value for k in v))
        return _table(cols, [[v.get(c, "") for c in cols] for v in value])
    if isinstance(value, list) and value and all(isinstance(v, (list, tuple)) for v in value):
        return _table([""] * max(len(v) for v in value), [list(v) for v in value])
    return f"<pre>{_esc(json.dumps(value, indent=1) if not isinstance(value, str) else value)}</pre>"


def _events_section(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return ["<h2>Health</h2><p>No health events were logged.</p>"]
    rows = [[e.get("event", ""), e.get("epoch", ""), e.get("step", ""), e.get("message", ""), e.get("fix", "")]
            for e in events]
    return ["<h2>Health</h2>", _table(["event", "epoch", "step", "message", "fix"], rows, left=5, cls="events")]


def render_run(run_dir: str | Path) -> Path:
    """Write run_dir/report.html: config, curves, protocols, confusion, analysis, health."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory; give a run directory (runs/<name>)")
    config = read_config(run_dir)
    epochs, events = read_metrics(run_dir)
    evaluation = read_json(run_dir / "eval.json")
    body: list[str] = []
    summary = []
    vals = [e["val_top1"] for e in epochs if e.get("val_top1") is not None]
    if epochs:
        summary.append(["epochs", max(e["epoch"] for e in epochs)])
    if vals:
        summary.append(["best val top-1", max(vals)])
    primary = primary_protocol(evaluation)
    if primary:
        summary.append([f"test top-1 error % ({primary})", _pct(evaluation["protocols"][primary].get("top1_error"))])
    if not evaluation:
        body.append('<p class="muted">No eval.json yet: the run is unfinished or failed before testing.</p>')
    body.append(_table(["", "value"], summary, cls="summary") if summary else "")
    if epochs:
        body += ["<h2>Learning curves</h2>", _img(plots.learning_curves(epochs), "learning curves")]
    body += _protocols_section(evaluation)
    if evaluation.get("confusion"):
        body += ["<h2>Confusion matrix</h2>",
                 _img(plots.confusion_matrix(evaluation["confusion"], evaluation.get("classes") or []),
                      "confusion matrix")]
    body += _analysis_section(evaluation)
    body += _events_section(events)
    if config:
        body += ["<h2>Config</h2>", f"<pre>{_esc(yaml.safe_dump(config, sort_keys=False))}</pre>"]
    return _write(run_dir / "report.html", _page(f"Run {config.get('name') or '/'.join(run_dir.resolve().parts[-2:])}", body))


# --- a sweep -----------------------------------------------------------------------------------

def _read_spec(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's spec.yaml as written by the sweep ({} if missing)."""
    path = sweep_dir / "spec.yaml"
    return (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}


def _wants_paper(spec: dict[str, Any]) -> bool:
    return bool((spec.get("report") or {}).get("paper"))


def _stats(sweep_dir: Path, spec: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Index rows and per-cell stats with each key in the spec's grid order (the index sorts them)."""
    order = list(spec.get("grid") or {})
    rows = read_rows(sweep_dir)
    for row in rows:
        row["key"] = {k: row["key"][k] for k in sorted(row["key"], key=lambda k: order.index(k) if k in order else 99)}
    return rows, cell_stats(rows)


def _x_axis(spec: dict[str, Any], stats: list[dict[str, Any]]) -> str | None:
    wanted = (spec.get("report") or {}).get("x")
    axes = list(stats[0]["key"]) if stats else []
    if wanted in axes:
        return wanted
    return "train.batch_size" if "train.batch_size" in axes else None


def _cells_table(stats: list[dict[str, Any]]) -> str:
    axes = list(stats[0]["key"]) if stats else []
    rows = []
    for s in stats:
        rows.append([*(s["key"][a] for a in axes), f"{s['n']}/{s['runs']}", fmt_pct(s["mean"], s["std"]),
                     fmt_pct(s["min"]), fmt_pct(s["max"]),
                     "–" if s["never_learned"] is None else f"{100 * s['never_learned']:.0f}%",
                     s["failed"], "–" if s["wall_s"] is None else f"{s['wall_s']:.0f}"])
    headers = [a.split(".")[-1] for a in axes] + ["n", "test top-1 % mean ± std", "min", "max",
                                                  "never learned", "failed", "wall s/run"]
    return _table(headers, rows, left=len(axes), cls="cells")


def _label(key: dict[str, Any]) -> str:
    """A cell's name in tables and plots: its grid values, e.g. "D, jitter"."""
    return ", ".join(str(v) for v in key.values()) or "all"


def _table3_section(stats: list[dict[str, Any]]) -> list[str]:
    """Ours next to the paper's Table 3, per cell, when the grid has the paper's configs."""
    out: list[str] = []
    table3 = [(s, table3_reference(s["key"])) for s in stats]
    if any(ref for _, ref in table3):
        body = [[_label(s["key"]), s["n"],
                 "–" if s["mean"] is None else f"{100 * (1 - s['mean']):.2f} ± {100 * s['std']:.2f}",
                 f"{ref[0]:.1f} / {ref[1]:.1f}" if ref else "–"] for s, ref in table3]
        out += ["<h2>Next to the paper (Table 3)</h2>",
                "<p>Ours: Fashion-MNIST top-1 error % (mean ± std over n seeds). Paper: ImageNet top-1 / top-5 "
                "error %. Compare orderings, not values.</p>",
                _table(["cell", "n", "ours top-1 err", "paper top-1 / top-5"], body, cls="paper")]
    return out


def _sweep_protocols_section(rows: list[dict[str, Any]], stats: list[dict[str, Any]], paper: bool) -> list[str]:
    """Top-1 error per cell and protocol, when the runs were scored under several protocols."""
    headers, body = _protocol_grid(rows, stats, paper=paper)
    if len([h for h in headers[2:] if not h.startswith("paper")]) < 2:  # one protocol: the cells table says it
        return []
    text = ("Top-1 error % (mean ± std over n seeds) per cell and protocol; the last row counts the runs where "
            "each protocol beat the first one.")
    if paper:
        text += (f" The paper's Table 5 (ImageNet top-1 err %, {', '.join(TABLE5)} with jittered training scale; its "
                 "dense is our multi_scale) is given for those cells.")
    return ["<h2>Test protocols (Table 5)</h2>", f"<p>{text}</p>", _table(headers, body, left=1, cls="protocols")]


def _ensembles_section(sweep_dir: Path) -> list[str]:
    """Table 6: ensembles over seeds (from studies.run_ensembles) next to the paper's."""
    ensembles = read_json(sweep_dir / "ensembles.json")
    body = []
    for name, results in ensembles.items():
        by_protocol: dict[str, list[float]] = {}
        for result in results:
            for row, figures in result["protocols"].items():
                by_protocol.setdefault(row.split(":", 1)[-1], []).append(100 * figures["top1_error"])
        for protocol, errors in by_protocol.items():
            mean, std = mean_std(errors)
            ref = TABLE6.get(f"{name}, {TABLE6_COLUMNS.get(protocol, protocol)}")
            body.append([name, protocol, f"{mean:.2f} ± {std:.2f} (n={len(errors)})",
                         f"{ref[0]:.1f} / {ref[1]:.1f}" if ref else "–"])
    if not body:
        return []
    return ["<h2>Ensembles (Table 6)</h2><p>Posteriors of the members averaged, members paired by seed.</p>",
            _table(["ensemble", "protocol", "ours top-1 err %", "paper top-1 / top-5"], body, left=2,
                   cls="ensembles")]


def _confusion_section(sweep_dir: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Per cell, the test confusion matrices of its finished runs summed over seeds."""
    summed: dict[str, list[list[float]]] = {}
    classes: list[str] = []
    for row in rows:
        evaluation = read_json(sweep_dir / "cells" / row["id"] / "eval.json") if row["status"] == "done" else {}
        matrix = evaluation.get("confusion")
        if not matrix:
            continue
        classes = classes or evaluation.get("classes") or []
        label = _label(row["key"])
        if label in summed and len(summed[label]) == len(matrix):
            summed[label] = [[a + b for a, b in zip(r, s)] for r, s in zip(summed[label], matrix)]
        else:
            summed[label] = [list(r) for r in matrix]
    if not summed:
        return []
    order = f" Classes in order: {', '.join(_esc(c) for c in classes)}." if classes else ""
    return ["<h2>Confusion matrices</h2>", f"<p>Test set, each cell's runs summed over seeds; rows are the true "
            f"class, columns the predicted one.{order}</p>", _img(plots.confusion_grid(summed), "confusion matrices")]


def render_sweep(sweep_dir: str | Path) -> Path:
    """Write sweep_dir/report.html: per-cell statistics, box plots, curves, failures."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "sweep.db").is_file():
        raise ConfigError(f"{sweep_dir} has no sweep.db; give a sweep directory (vggnet sweep --out DIR)")
    spec = _read_spec(sweep_dir)
    rows, stats = _stats(sweep_dir, spec)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "running", "pending")}
    title = f"Sweep {spec.get('study') or sweep_dir.name}" + (f" ({spec['budget']} budget)" if spec.get("budget") else "")
    body = [f"<p>{len(rows)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ". "
            f"A run <em>never learned</em> when its test accuracy is at most chance (1/C) + "
            f"{100 * NEVER_LEARNED_MARGIN:.0f} points.</p>"]
    if stats:
        body += ["<h2>Cells</h2>", _cells_table(stats)]
        x_axis = _x_axis(spec, stats)
        if any(s["accs"] for s in stats):
            png = plots.box_by_x(stats, x_axis) if x_axis else plots.box_by_cell(stats)
            body += [f"<h2>Test accuracy over seeds{' vs ' + x_axis.split('.')[-1] if x_axis else ''}</h2>",
                     _img(png, "accuracy box plot")]
        if _wants_paper(spec):
            body += _table3_section(stats)
        body += _sweep_protocols_section(rows, stats, _wants_paper(spec))
        body += _ensembles_section(sweep_dir)
        curves: dict[str, list[list[dict[str, Any]]]] = {}
        for row in rows:
            epochs, _ = read_metrics(sweep_dir / "cells" / row["id"])
            if epochs:
                label = _label(row["key"])
                curves.setdefault(label, []).append(epochs)
        if curves:
            body += ["<h2>Validation curves</h2>", _img(plots.sweep_curves(curves), "validation curves")]
        body += _confusion_section(sweep_dir, rows)
    failed = [[r["id"], r["error"] or ""] for r in rows if r["status"] == "failed"]
    if failed:
        body += ["<h2>Failed runs</h2>", _table(["run", "error"], failed, left=2, cls="failed")]
    links = [f'<li><a href="cells/{_esc(r["id"])}/report.html">{_esc(r["id"])}</a></li>' for r in rows
             if (sweep_dir / "cells" / r["id"] / "report.html").is_file()]
    if links:
        body += ["<h2>Runs</h2><ul>", *links, "</ul>"]
    if spec:
        body += ["<h2>Spec</h2>", f"<pre>{_esc(yaml.safe_dump(spec, sort_keys=False))}</pre>"]
    return _write(sweep_dir / "report.html", _page(title, body))


def render(path: str | Path) -> Path:
    """A sweep directory (has sweep.db) or a run directory."""
    path = Path(path)
    return render_sweep(path) if (path / "sweep.db").is_file() else render_run(path)


def sweep_markdown(sweep_dir: str | Path, plot: str | Path | None = None) -> str:
    """The per-cell table as Markdown (for docs/RESULTS.md), optionally saving the box plot."""
    sweep_dir = Path(sweep_dir)
    spec = _read_spec(sweep_dir)
    _, stats = _stats(sweep_dir, spec)
    if not stats:
        return "(no runs)\n"
    axes = list(stats[0]["key"])
    paper = _wants_paper(spec) and any(table3_reference(s["key"]) for s in stats)
    headers = [a.split(".")[-1] for a in axes] + ["n", "test top-1 % (mean ± std)", "min", "max", "never learned"]
    headers += ["paper, Table 3 (ImageNet top-1 / top-5 err %)"] if paper else []
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for s in stats:
        stuck = "–" if s["never_learned"] is None else f"{round(s['never_learned'] * s['n'])}/{s['n']}"
        ref = table3_reference(s["key"]) if paper else None
        lines.append("| " + " | ".join([str(s["key"][a]) for a in axes] + [
            f"{s['n']}" + (f" (+{s['failed']} failed)" if s["failed"] else ""), fmt_pct(s["mean"], s["std"]),
            fmt_pct(s["min"]), fmt_pct(s["max"]), stuck] + ([f"{ref[0]:.1f} / {ref[1]:.1f}" if ref else "–"]
                                                           if paper else [])) + " |")
    if plot is not None and any(s["accs"] for s in stats):
        x_axis = _x_axis(spec, stats)
        Path(plot).write_bytes(plots.box_by_x(stats, x_axis) if x_axis else plots.box_by_cell(stats))
    return "\n".join(lines) + "\n"


def _protocol_grid(rows: list[dict[str, Any]], stats: list[dict[str, Any]], *,
                   paper: bool = False) -> tuple[list[str], list[list[str]]]:
    """Top-1 error % per cell (rows) and protocol (columns), mean ± std over finished runs, and a
    last row pairing runs: in how many each protocol scored below the first. With ``paper``, a
    column with Table 5 (dense / multi-crop / both) for the cells it applies to (D, E, jittered S)."""
    rows = [r for r in rows if r["status"] == "done" and r.get("protocols")]
    protocols = list(dict.fromkeys(p for r in rows for p in r["protocols"]))
    if not protocols or not stats:
        return [], []
    headers = ["cell", "n", *protocols]
    refs = []  # Table 5's dense / multi-crop / both for the cells it applies to, else "–"
    for s in stats:
        name, scale = str(s["key"].get("model.name", "")), str(s["key"].get("scale", ""))
        figures = [table5_reference(name, p) for p in ("multi_scale", "multi_crop", "fusion")]
        applies = paper and scale.startswith("jitter") and all(figures)
        refs.append(" / ".join(f"{f[0]:.1f}" for f in figures) if applies else "–")
    show_refs = any(r != "–" for r in refs)
    if show_refs:
        headers.append("paper, Table 5: dense / multi-crop / both")
    body = []
    for s, ref in zip(stats, refs):
        cell_rows = [r for r in rows if r["key"] == s["key"]]
        figures = [protocol_stats(cell_rows, p) for p in protocols]
        body.append([_label(s["key"]), str(len(cell_rows)),
                     *("–" if f is None else f"{f[0]:.1f} ± {f[1]:.1f}" for f in figures)] + ([ref] if show_refs else []))
    first, wins = protocols[0], []
    for p in protocols:
        paired = [r["protocols"] for r in rows if first in r["protocols"] and p in r["protocols"]]
        better = sum(x[p]["top1_error"] < x[first]["top1_error"] for x in paired)
        wins.append("–" if p == first else f"{better}/{len(paired)}")
    body.append([f"runs below {first}", "", *wins] + ([""] if show_refs else []))
    return headers, body


def protocols_markdown(sweep_dir: str | Path) -> str:
    """Top-1 error % per cell and test protocol (mean ± std over seeds) as Markdown, and a last
    row pairing runs: in how many runs each protocol scored a lower error than the first one."""
    sweep_dir = Path(sweep_dir)
    spec = _read_spec(sweep_dir)
    rows, stats = _stats(sweep_dir, spec)
    headers, body = _protocol_grid(rows, stats, paper=_wants_paper(spec))
    if not body:
        return "(no evaluated runs)\n"
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in body[:-1]]
    lines.append("| " + " | ".join([f"**{body[-1][0]}**", *body[-1][1:]]) + " |")
    return "\n".join(lines) + "\n"
