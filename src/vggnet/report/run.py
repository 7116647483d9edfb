"""One run's report.html: config, curves, protocols, confusion, analysis, health. Robust to
missing pieces: a run without eval.json (still training, or crashed) renders with what it has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vggnet.errors import ConfigError
from vggnet.report import plots
from vggnet.report.html import esc, img, page, pct, table, write
from vggnet.report.rundir import primary_protocol, read_config, read_json, read_metrics


def _protocols_section(evaluation: dict[str, Any]) -> list[str]:
    protocols = evaluation.get("protocols") or {}
    if not protocols:
        return []
    rows = [[name, pct(p.get("top1_error")), pct(p.get("top5_error")), p.get("n", "")]
            for name, p in protocols.items()]
    return [f"<h2>Test protocols</h2><p>Error in % (as in the paper's Table 5), on the {evaluation.get('split', 'test')} "
            "split; n is the number of images each row scored.</p>",
            table(["protocol", "top-1 error", "top-5 error", "n"], rows, cls="protocols")]


def _localisation_section(run_dir: Path, evaluation: dict[str, Any]) -> list[str]:
    """Appendix A runs: what the protocols mean, and test images with their boxes."""
    if evaluation.get("task") != "localisation":
        return []
    out = ["<h2>Localisation (Appendix A)</h2><p>Localisation error: a prediction is correct when its class is "
           "the ground truth's and its box overlaps a ground-truth box with IoU &gt; 0.5. <code>gt_class</code>: the "
           "ground-truth class given (the paper's Table 8 protocol); <code>classifier</code>: the classifier's "
           "top-5 classes, each with its merged box; <code>whole_image</code> and <code>centre_box</code> (the "
           f"training boxes' mean size): trivial baselines. Box head: {esc(evaluation.get('box_head'))}.</p>"]
    png = run_dir / "boxes.png"
    if png.is_file():
        out += ["<p>Test images: ground truth in green, the predicted box (ground-truth class) in red.</p>",
                img(png.read_bytes(), "predicted and ground-truth boxes")]
    return out


WARN_KEYS = ("collapse", "collapse_warning", "warning")


def _source(evaluation: dict[str, Any]) -> str:
    """Which evaluation a figure comes from: "centre protocol, 10000 test images"."""
    return esc(f"from the {evaluation.get('analysis_protocol', '?')} protocol, {evaluation.get('n', '?')} "
               f"{evaluation.get('split', 'test')} images")


def _analysis_section(evaluation: dict[str, Any]) -> list[str]:
    out: list[str] = []
    analysis = evaluation.get("analysis") or {}
    classes = evaluation.get("classes") or []
    if analysis:
        out.append(f"<h2>Error analysis</h2><p>{_source(evaluation)}</p>")
        for key in WARN_KEYS:
            if analysis.get(key):
                out.append(f'<p class="warn">{esc(analysis[key])}</p>')
        share = analysis.get("prediction_share")
        scalars = [[k.replace("_", " ") + (" %" if k.endswith(("share", "rate")) else ""),
                    f"{100 * v:.1f}" if k.endswith(("share", "rate")) and isinstance(v, float) else v]
                   for k, v in analysis.items()
                   if not isinstance(v, (dict, list)) and v is not None and k not in WARN_KEYS]
        if scalars:
            out.append(table(["", "value"], scalars, cls="analysis"))
        for key, value in analysis.items():
            if key in (*WARN_KEYS, "prediction_share") or not isinstance(value, (dict, list)):
                continue
            if value:
                out.append(f"<h3>{esc(key.replace('_', ' '))}</h3>{_generic(value)}")
    else:
        share = None
    per_class = evaluation.get("per_class")
    if per_class:
        cols, rows = _per_class_rows(per_class, classes)
        ratios = [i for i, c in enumerate(cols) if c in ("precision", "recall", "f1")]  # fractions -> %, one unit
        rows = [[r[0]] + [f"{100 * v:.1f}" if i in ratios and isinstance(v, (int, float)) else v
                          for i, v in enumerate(r[1:])] for r in rows]
        cols = [f"{c} %" if i in ratios else c for i, c in enumerate(cols)]
        if isinstance(share, list) and len(share) == len(rows):
            cols, rows = cols + ["share of predictions"], [r + [f"{100 * v:.1f}%"] for r, v in zip(rows, share)]
        out += [f"<h2>Per class</h2><p>{_source(evaluation)}</p>", table(["class"] + cols, rows, cls="per-class")]
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
        return table(["", "value"], [[k, v] for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = list(dict.fromkeys(k for v in value for k in v))
        return table(cols, [[v.get(c, "") for c in cols] for v in value])
    if isinstance(value, list) and value and all(isinstance(v, (list, tuple)) for v in value):
        return table([""] * max(len(v) for v in value), [list(v) for v in value])
    return f"<pre>{esc(json.dumps(value, indent=1) if not isinstance(value, str) else value)}</pre>"


def read_examples(run_dir: str | Path) -> tuple[dict[str, Any], list[str]]:
    """(arrays, class names) from examples.safetensors (vggnet.eval.examples); ({}, []) if absent."""
    path = Path(run_dir) / "examples.safetensors"
    if not path.is_file():
        return {}, []
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
            classes = json.loads((fh.metadata() or {}).get("classes") or "[]")
    except Exception:  # noqa: BLE001 - a torn or foreign file: the report goes on without images
        return {}, []
    return arrays, classes


def _examples_section(run_dir: Path) -> list[str]:
    """The most confident mistakes, then each class's most confident correct examples."""
    arrays, classes = read_examples(run_dir)

    def name(i: int) -> str:
        return classes[i] if 0 <= i < len(classes) else str(i)

    out: list[str] = []
    if "mistakes" in arrays:
        titles = [f"true {name(t)}\npred {name(p)} {100 * q:.0f}%" for t, p, q in
                  zip(arrays["mistakes_true"], arrays["mistakes_pred"], arrays["mistakes_prob"])]
        out += ["<h2>Most confident mistakes</h2><p>Test images (centre crop) the net got wrong with the highest "
                "probability for the wrong class: true label, predicted label, its probability.</p>",
                img(plots.example_grid(arrays["mistakes"], titles, colours=["firebrick"] * len(titles)),
                    "most confident mistakes")]
    if "correct" in arrays:
        titles = [f"{name(t)} {100 * q:.0f}%" for t, q in zip(arrays["correct_true"], arrays["correct_prob"])]
        per_class = max(1, round(len(titles) / max(1, len(set(arrays["correct_true"].tolist())))))
        out += ["<h2>Correct examples per class</h2><p>Each class's most confident correct test images; a class "
                "with none here was never predicted right.</p>",
                img(plots.example_grid(arrays["correct"], titles, columns=max(per_class * 3, 6)),
                    "correct examples per class")]
    return out


def _run_facts(run_dir: Path, epochs: list[dict[str, Any]]) -> list[list[Any]]:
    """Wall time, images/s, date, versions and whether the run resumed (run.json, metrics)."""
    facts: list[list[Any]] = []
    if epochs and epochs[-1].get("wall_s") is not None:
        facts.append(["training wall time", f"{epochs[-1]['wall_s'] / 60:.1f} min"])
    rates = [e["images_per_s"] for e in epochs if e.get("images_per_s")]
    if rates:
        facts.append(["training images/s (mean over epochs)", f"{sum(rates) / len(rates):.0f}"])
    info = read_json(run_dir / "run.json")
    if info:
        facts.append(["finished", info.get("finished_at", "")])
        facts.append(["resumed from a checkpoint", "yes" if info.get("resumed") else "no"])
        facts.append(["device", info.get("device", "")])
        skipped = info.get("skipped_images") or {}
        if isinstance(skipped, dict) and skipped.get("count"):
            reasons = skipped.get("reasons") or {}
            why = ", ".join(f"{n} {r}" for r, n in reasons.items()) if isinstance(reasons, dict) else ""
            facts.append(["image files skipped", f"{skipped['count']}" + (f" ({why})" if why else "")])
        facts += [[name, version] for name, version in (info.get("versions") or {}).items()]
    return facts


def _events_section(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return ["<h2>Health</h2><p>No health events were logged.</p>"]
    rows = [[e.get("event", ""), e.get("epoch", ""), e.get("step", ""), e.get("message", ""), e.get("fix", "")]
            for e in events]
    return ["<h2>Health</h2>", table(["event", "epoch", "step", "message", "fix"], rows, left=5, cls="events")]


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
        summary.append(["best val top-1 error %", f"{100 * (1 - max(vals)):.2f}"])
    primary = primary_protocol(evaluation)
    if primary:
        row = evaluation["protocols"][primary]
        summary.append([f"test top-1 error % ({primary}, {row.get('n', evaluation.get('n'))} images)",
                        pct(row.get("top1_error"))])
    if not evaluation:
        body.append('<p class="muted">No eval.json yet: the run is unfinished or failed before testing.</p>')
    summary += _run_facts(run_dir, epochs)
    body.append(table(["", "value"], summary, cls="summary") if summary else "")
    if epochs:
        body += ["<h2>Learning curves</h2>", img(plots.learning_curves(epochs), "learning curves")]
    body += _protocols_section(evaluation)
    body += _localisation_section(run_dir, evaluation)
    if evaluation.get("confusion"):
        body += [f"<h2>Confusion matrix</h2><p>{_source(evaluation)}</p>",
                 img(plots.confusion_matrix(evaluation["confusion"], evaluation.get("classes") or []),
                      "confusion matrix")]
    body += _examples_section(run_dir)
    body += _analysis_section(evaluation)
    body += _events_section(events)
    if config:
        body += ["<h2>Config</h2>", f"<pre>{esc(yaml.safe_dump(config, sort_keys=False))}</pre>"]
    return write(run_dir / "report.html", page(f"Run {config.get('name') or '/'.join(run_dir.resolve().parts[-2:])}", body))
