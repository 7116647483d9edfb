"""Raw results in the repository: a sweep as one small JSONL file, and the RESULTS.md tables
recomputed from it, so every published number can be checked without the run directories.

    python -m vggnet.experiments.export runs/studies/init-medium docs/results/init-medium.jsonl
    python -m vggnet.experiments.export --tables docs/results/init-medium.jsonl --plot docs/results/init-medium.png
    python -m vggnet.experiments.export --compare docs/results/init_small.jsonl docs/results/init_medium.jsonl

A study split across sittings (`vggnet sweep SPEC --seeds 0 1`, later `--seeds 2`) is merged here:
exporting into a file that already holds the same study and budget keeps that file's runs that
this sweep has no figures for (a run it finished or failed replaces the earlier one), so the
file accumulates every sitting's figures.

The file's first line is the header, {"export": "vggnet-sweep", "version": 1, "spec": {...}}
(the sweep's study, budget, grid axes, set, exclude, report options and hypotheses); then one line per run,
{"run": id, "cell": {axis: value}, "seed", "status", "protocols": {name: {"top1_error",
"top5_error"}} (errors in %), "best_epoch", "best_val_top1" (%), "epochs", "steps", "wall_s",
"images_per_s", "never_learned", "num_classes"}; then one line per ensemble and seed,
{"ensemble": name, "seed", "members", "protocols"}. `tables(path)` gives the Markdown that
`sweep_markdown`, `protocols_markdown` and `verdicts_markdown` give for the sweep directory;
`compare(paths)` puts the verdicts of one study's budgets side by side, a row per claim.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vggnet.errors import ConfigError, VGGNetError
from vggnet.experiments.report import _read_spec, _stats, cells_markdown, protocols_table, study_plot
from vggnet.experiments.summary import never_learned
from vggnet.experiments.verdicts import fmt_verdict, spec_verdicts, verdicts_table
from vggnet.files import atomic_write
from vggnet.report.rundir import accuracy, primary_protocol, read_json, read_metrics

FORMAT, VERSION = "vggnet-sweep", 1
SPEC_FIELDS = ("study", "budget", "grid", "set", "exclude", "report", "hypotheses")


def _pct(error: float | None) -> float | None:
    acc = accuracy(error)
    return None if acc is None else 100.0 * (1.0 - acc)  # unrounded: the tables recompute to the digit


def _run_record(sweep_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    epochs, _ = read_metrics(sweep_dir / "cells" / row["id"])
    best = max(epochs, key=lambda e: e.get("val_top1") or -1.0, default=None)
    last = epochs[-1] if epochs else {}
    rates = [e["images_per_s"] for e in epochs if e.get("images_per_s")]
    protocols = {name: {"top1_error": _pct(f.get("top1_error")), "top5_error": _pct(f.get("top5_error"))}
                 for name, f in (row.get("protocols") or {}).items()}
    return {
        "run": row["id"], "cell": row["key"], "seed": row["seed"], "status": row["status"], "protocols": protocols,
        "best_epoch": best.get("epoch") if best else None,
        "best_val_top1": None if not best or best.get("val_top1") is None else round(100.0 * best["val_top1"], 4),
        "epochs": row.get("epochs"), "steps": last.get("step"),
        "wall_s": None if row.get("wall_s") is None else round(row["wall_s"], 1),
        "images_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        "never_learned": never_learned(row.get("test_top1"), row.get("num_classes")),
        "num_classes": row.get("num_classes"),
    }


def _earlier_sittings(path: Path, header: dict[str, Any], runs: set[str],
                      ensembles: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """The lines of an existing export of the same study that this sweep does not replace: runs it
    has no figures for, and ensembles it did not recompute whose members it did not rerun."""
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path} to merge into it ({exc}); export to a new file") from None
    try:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        lines = []
    if not lines or not isinstance(lines[0], dict) or lines[0].get("export") != FORMAT:
        raise ConfigError(f"{path} exists and is not a vggnet sweep export; export to a new file")
    earlier = lines[0].get("spec") or {}
    differ = [k for k in SPEC_FIELDS if json.loads(json.dumps(header["spec"].get(k))) != earlier.get(k)]
    if differ:
        raise ConfigError(f"{path} holds another sweep (its {', '.join(differ)} differ from this one's); export "
                          f"to a new file, or delete it to replace it")
    return [line for line in lines[1:] if line.get("run") not in runs and (
        "ensemble" not in line or ((line["ensemble"], line.get("seed")) not in ensembles
                                   and not set(line.get("members") or []) & runs))]


def export_sweep(sweep_dir: str | Path, path: str | Path) -> Path:
    """Write a sweep's figures to `path` (JSONL, see the module docstring), merged with the figures
    of earlier sittings of the same sweep already in `path`; returns the path."""
    sweep_dir, path = Path(sweep_dir), Path(path)
    if not (sweep_dir / "sweep.db").is_file():
        raise ConfigError(f"{sweep_dir} is not a sweep directory (no sweep.db); give the directory "
                          f"`vggnet sweep` wrote, e.g. runs/studies/<study>-<budget>")
    spec = _read_spec(sweep_dir)
    rows, _ = _stats(sweep_dir, spec)  # cell keys in the spec's grid order
    header = {"export": FORMAT, "version": VERSION, "spec": {k: spec.get(k) for k in SPEC_FIELDS}}
    # only runs with figures: a cell still pending (a sitting stopped before it) is left to the
    # sitting that runs it, and does not hide that seed's figures from an earlier one
    runs = [_run_record(sweep_dir, r) for r in rows if r["status"] in ("done", "failed")]
    ensembles = [{"ensemble": name, "seed": result["seed"], "members": result["members"],
                  "protocols": {k: {m: _pct(v.get(m)) for m in ("top1_error", "top5_error")}
                                for k, v in result["protocols"].items()}}
                 for name, results in read_json(sweep_dir / "ensembles.json").items() for result in results]
    earlier = _earlier_sittings(path, header, {r["run"] for r in runs},
                                {(e["ensemble"], e["seed"]) for e in ensembles})
    order = {json.dumps(r["key"], sort_keys=True): i for i, r in reversed(list(enumerate(rows)))}  # grid order
    runs += [line for line in earlier if "run" in line]
    runs.sort(key=lambda r: (r["seed"], order.get(json.dumps(r["cell"], sort_keys=True), len(order))))  # seed-major
    ensembles += [line for line in earlier if "ensemble" in line]
    ensembles.sort(key=lambda e: (e["ensemble"], e["seed"]))
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in [header, *runs, *ensembles])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def read_export(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(spec, index-like rows, ensembles) from an export, in the shapes the report functions take
    (errors back to fractions, as eval.json has them)."""
    try:
        lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError):
        lines = []
    if not lines or not isinstance(lines[0], dict) or lines[0].get("export") != FORMAT:
        raise ConfigError(f"{path} is not a vggnet sweep export (no {FORMAT!r} header line)")
    spec = lines[0]["spec"]
    rows, ensembles = [], {}

    def fractions(protocols: dict[str, Any]) -> dict[str, Any]:
        return {k: {m: None if v is None else v / 100.0 for m, v in f.items()} for k, f in protocols.items()}

    for line in lines[1:]:
        if "ensemble" in line:
            ensembles.setdefault(line["ensemble"], []).append(
                {"seed": line["seed"], "members": line["members"], "protocols": fractions(line["protocols"])})
            continue
        protocols = fractions(line["protocols"])
        primary = primary_protocol({"protocols": protocols})
        rows.append({"id": line["run"], "key": line["cell"], "seed": line["seed"], "status": line["status"],
                     "protocols": protocols, "num_classes": line["num_classes"], "wall_s": line["wall_s"],
                     "epochs": line["epochs"], "error": None,
                     "test_top1": accuracy(protocols[primary]["top1_error"]) if primary else None})
    return spec, rows, ensembles


def tables(path: str | Path) -> str:
    """The Markdown tables of docs/RESULTS.md recomputed from an export: the cells table, the
    protocols table (when several protocols were scored) and the pre-registered verdicts."""
    spec, rows, ensembles = read_export(path)
    out = [cells_markdown(spec, rows)]
    if len({p for r in rows for p in r["protocols"]}) > 1:
        out.append(protocols_table(spec, rows))
    verdicts = verdicts_table(spec_verdicts(spec, rows, ensembles))
    if verdicts:
        out.append(verdicts)
    return "\n".join(out)


def compare(paths: list[str | Path]) -> str:
    """One study's pre-registered verdicts at several budgets side by side (Markdown): a row per
    claim, in the order of the first export's spec, with each budget's n, mean difference a - b
    [interval] and verdict, and whether the verdict changes with scale. A claim some budget
    does not test shows a dash there."""
    columns = []
    for path in paths:
        spec, rows, ensembles = read_export(path)
        columns.append((spec, {h.get("claim", ""): v for h, v in spec_verdicts(spec, rows, ensembles)}))
    studies = {spec.get("study") for spec, _ in columns}
    if len(studies) > 1:
        raise ConfigError(f"--compare takes exports of one study at several budgets; these hold "
                          f"{', '.join(sorted(map(str, studies)))}")
    claims = list(dict.fromkeys(claim for _, found in columns for claim in found))
    head = ["claim", "source"]
    for spec, _ in columns:
        head += [f"{spec.get('budget') or 'full'}: n", "mean a - b [interval]", "verdict"]
    lines = ["| " + " | ".join(head + ["changes with scale"]) + " |", "|" + "---|" * (len(head) + 1)]
    for claim in claims:
        source = next(found[claim].source for _, found in columns if claim in found)
        cells, decided = [claim, source], []
        for _, found in columns:
            if claim not in found:
                cells += ["–", "–", "–"]
                continue
            verdict, interval, _ = fmt_verdict(found[claim])
            cells += [str(found[claim].n), interval, f"**{verdict}**"]
            decided.append(found[claim].verdict)
        settled = [v for v in decided if v != "unresolved"]
        change = "yes" if len(set(settled)) > 1 else "–" if len(settled) < 2 else "no"
        lines.append("| " + " | ".join(cells + [change]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggnet.experiments.export", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a sweep directory (to export) or, with --tables, an export file")
    p.add_argument("--compare", action="store_true",
                   help="print the verdicts of SOURCE and the exports after it, one study at several budgets "
                        "(e.g. small and medium), side by side")
    p.add_argument("dest", nargs="*", help="the JSONL file to write, e.g. docs/results/init-medium.jsonl "
                                           "(with --compare: the other exports)")
    p.add_argument("--tables", action="store_true", help="print the RESULTS.md tables recomputed from an export")
    p.add_argument("--plot", help="with --tables: also write the study's plot (PNG) here")
    args = p.parse_args(argv)
    try:
        return _run(p, args)
    except VGGNetError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `--tables ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.compare:
        if not args.dest:
            p.error("--compare takes two exports or more")
        print(compare([args.source, *args.dest]), end="")
        return 0
    if len(args.dest) > (0 if args.tables else 1):
        p.error(f"unexpected argument {args.dest[-1]}")
    if args.tables:
        print(tables(args.source), end="")
        if args.plot:
            spec, rows, _ = read_export(args.source)
            Path(args.plot).write_bytes(study_plot(spec, rows))
        return 0
    if not args.dest:
        p.error("give the file to write")
    print(export_sweep(args.source, args.dest[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
