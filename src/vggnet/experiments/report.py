"""A sweep's report.html and the Markdown tables of docs/RESULTS.md, built on the per-run
report pieces in vggnet.report (a sweep is a set of run directories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vggnet.errors import ConfigError
from vggnet.experiments.index import read_rows
from vggnet.experiments.paper import (
    TABLE5,
    TABLE6,
    TABLE6_COLUMNS,
    table3_reference,
    table5_reference,
)
from vggnet.experiments.summary import (
    NEVER_LEARNED_MARGIN,
    cell_stats,
    fmt_pct,
    mean_std,
    never_learned,
    protocol_stats,
)
from vggnet.experiments.verdicts import VERDICT_HEADERS, bootstrap_interval, sweep_verdicts, verdict_rows
from vggnet.report import plots
from vggnet.report.html import esc, img, page, table, write
from vggnet.report.run import render_run
from vggnet.report.rundir import read_json, read_metrics


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
    return table(headers, rows, left=len(axes), cls="cells")


def _label(key: dict[str, Any]) -> str:
    """A cell's name in tables and plots: its grid values, e.g. "D, jitter"."""
    return ", ".join(str(v) for v in key.values()) or "all"


TABLE3_PROTOCOL = "dense"  # the paper's Table 3: single-scale dense evaluation at Q = S


def table3_ours(rows: list[dict[str, Any]], key: dict[str, Any]) -> tuple[str, tuple[float, float, int] | None]:
    """(protocol, (mean, std, n) top-1 error %) of one cell under Table 3's protocol (dense at Q = S),
    or under the run's first protocol when it was not scored densely (the tables then say which)."""
    cell = [r for r in rows if r["key"] == key]
    dense = protocol_stats(cell, TABLE3_PROTOCOL)
    if dense is not None:
        return TABLE3_PROTOCOL, dense
    done = [r for r in cell if r["status"] == "done" and r.get("protocols")]
    first = next(iter(done[0]["protocols"]), None) if done else None
    return (first, protocol_stats(cell, first)) if first else ("–", None)


def _table3_section(rows: list[dict[str, Any]], stats: list[dict[str, Any]]) -> list[str]:
    """Ours next to the paper's Table 3, per cell, when the grid has the paper's configs."""
    out: list[str] = []
    table3 = [(s, table3_reference(s["key"])) for s in stats]
    if any(ref for _, ref in table3):
        body = []
        for s, ref in table3:
            protocol, ours = table3_ours(rows, s["key"])
            body.append([_label(s["key"]), ours[2] if ours else 0, protocol,
                         f"{ours[0]:.2f} ± {ours[1]:.2f}" if ours else "–",
                         f"{ref[0]:.1f} / {ref[1]:.1f}" if ref else "–"])
        out += ["<h2>Next to the paper (Table 3)</h2>",
                "<p>Table 3 is dense evaluation at Q = S; ours is the same protocol (the protocol column "
                "says where a cell was not scored densely). Ours: Fashion-MNIST top-1 error % (mean ± std over n "
                "seeds). Paper: ImageNet top-1 / top-5 error %. Compare orderings, not values.</p>",
                table(["cell", "n", "protocol", "ours top-1 err", "paper top-1 / top-5"], body, cls="paper")]
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
    return ["<h2>Test protocols (Table 5)</h2>", f"<p>{text}</p>", table(headers, body, left=1, cls="protocols")]


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
            table(["ensemble", "protocol", "ours top-1 err %", "paper top-1 / top-5"], body, left=2,
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
    order = f" Classes in order: {', '.join(esc(c) for c in classes)}." if classes else ""
    return ["<h2>Confusion matrices</h2>", f"<p>Test set, each cell's runs summed over seeds; rows are the true "
            f"class, columns the predicted one.{order}</p>", img(plots.confusion_grid(summed), "confusion matrices")]


def study_plot(spec: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """The study's plot: test top-1 error % per cell, every seed a dot, with the mean's seeded
    95% bootstrap interval (PNG bytes); runs that never learned are marked off the scale."""
    cells, stats_list = [], cell_stats(rows)
    # a label names only the axes that vary (a budget that fixes one, e.g. batch 128, would crowd it)
    varies = {axis for axis in {a for s in stats_list for a in s["key"]}
              if len({str(s["key"].get(axis)) for s in stats_list}) > 1}
    for stats in stats_list:
        errors = [100.0 * (1.0 - a) for a in stats["accs"]]
        interval = bootstrap_interval(errors) if len(errors) > 1 else None
        label = ", ".join(str(v) for a, v in stats["key"].items() if a in varies or len(stats_list) == 1)
        cells.append((label or "all", errors, interval))
    done = [r for r in rows if r["status"] == "done" and r.get("test_top1") is not None]
    learned = [100.0 * (1.0 - r["test_top1"]) for r in done if not never_learned(r["test_top1"], r.get("num_classes"))]
    ceiling = None  # runs that never learned go off the scale, so the learned cells' differences show
    if learned and len(learned) < len(done):
        ceiling = max(max(learned) + 0.15 * (max(learned) - min(learned)) + 1.0, min(learned) + 5.0)
    return plots.cell_points(cells, ceiling=ceiling)


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
                     img(png, "accuracy box plot")]
            body += ["<h2>Test top-1 error per cell</h2>", img(study_plot(spec, rows), "error per cell and seed")]
        verdicts = verdict_rows(sweep_verdicts(sweep_dir))
        if verdicts:
            body += ["<h2>Pre-registered hypotheses</h2><p>Written in the spec before the runs; a - b is the "
                     "per-pair difference in points (top-1 error %, or % of runs that never learned), with its "
                     "seeded 95% bootstrap interval; see vggnet.experiments.verdicts for the rules.</p>",
                     table(VERDICT_HEADERS, verdicts, left=3, cls="verdicts")]
        if _wants_paper(spec):
            body += _table3_section(rows, stats)
        body += _sweep_protocols_section(rows, stats, _wants_paper(spec))
        body += _ensembles_section(sweep_dir)
        curves: dict[str, list[list[dict[str, Any]]]] = {}
        for row in rows:
            epochs, _ = read_metrics(sweep_dir / "cells" / row["id"])
            if epochs:
                label = _label(row["key"])
                curves.setdefault(label, []).append(epochs)
        if curves:
            body += ["<h2>Validation curves</h2>", img(plots.sweep_curves(curves), "validation curves")]
        body += _confusion_section(sweep_dir, rows)
    failed = [[r["id"], r["error"] or ""] for r in rows if r["status"] == "failed"]
    if failed:
        body += ["<h2>Failed runs</h2>", table(["run", "error"], failed, left=2, cls="failed")]
    links = [f'<li><a href="cells/{esc(r["id"])}/report.html">{esc(r["id"])}</a></li>' for r in rows
             if (sweep_dir / "cells" / r["id"] / "report.html").is_file()]
    if links:
        body += ["<h2>Runs</h2><ul>", *links, "</ul>"]
    if spec:
        body += ["<h2>Spec</h2>", f"<pre>{esc(yaml.safe_dump(spec, sort_keys=False))}</pre>"]
    return write(sweep_dir / "report.html", page(title, body))


def render(path: str | Path) -> Path:
    """A sweep directory (has sweep.db) or a run directory."""
    path = Path(path)
    return render_sweep(path) if (path / "sweep.db").is_file() else render_run(path)


def sweep_markdown(sweep_dir: str | Path, plot: str | Path | None = None) -> str:
    """The per-cell table as Markdown (for docs/RESULTS.md), optionally saving the box plot."""
    sweep_dir = Path(sweep_dir)
    spec = _read_spec(sweep_dir)
    rows, _ = _stats(sweep_dir, spec)
    return cells_markdown(spec, rows, plot)


def cells_markdown(spec: dict[str, Any], rows: list[dict[str, Any]], plot: str | Path | None = None) -> str:
    """The per-cell table of index rows (from sweep.db or an export) as Markdown."""
    stats = cell_stats(rows)
    if not stats:
        return "(no runs)\n"
    axes = list(stats[0]["key"])
    paper = _wants_paper(spec) and any(table3_reference(s["key"]) for s in stats)
    headers = [a.split(".")[-1] for a in axes] + ["n", "test top-1 % (mean ± std)", "min", "max", "never learned"]
    headers += ["Table 3's protocol: dense top-1 err %", "paper, Table 3 (ImageNet top-1 / top-5 err %)"] if paper else []
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for s in stats:
        stuck = "–" if s["never_learned"] is None else f"{round(s['never_learned'] * s['n'])}/{s['n']}"
        extra = []
        if paper:
            ref = table3_reference(s["key"])
            protocol, ours = table3_ours(rows, s["key"])
            mine = "–" if ours is None else f"{ours[0]:.1f} ± {ours[1]:.1f}" + ("" if protocol == "dense" else f" ({protocol})")
            extra = [mine, f"{ref[0]:.1f} / {ref[1]:.1f}" if ref else "–"]
        lines.append("| " + " | ".join([str(s["key"][a]) for a in axes] + [
            f"{s['n']}" + (f" (+{s['failed']} failed)" if s["failed"] else ""), fmt_pct(s["mean"], s["std"]),
            fmt_pct(s["min"]), fmt_pct(s["max"]), stuck] + extra) + " |")
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
    rows, _ = _stats(sweep_dir, spec)
    return protocols_table(spec, rows)


def protocols_table(spec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The protocols table of index rows (from sweep.db or an export) as Markdown."""
    headers, body = _protocol_grid(rows, cell_stats(rows), paper=_wants_paper(spec))
    if not body:
        return "(no evaluated runs)\n"
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in body[:-1]]
    lines.append("| " + " | ".join([f"**{body[-1][0]}**", *body[-1][1:]]) + " |")
    return "\n".join(lines) + "\n"
