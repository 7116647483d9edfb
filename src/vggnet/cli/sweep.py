"""`vggnet sweep SPEC.yaml`: a grid of runs times seeds, resumable, indexed in sweep.db."""

from __future__ import annotations

import argparse
import os
import signal

from vggnet.experiments.report import protocols_markdown, render_sweep, sweep_markdown
from vggnet.experiments.spec import expand, load_spec
from vggnet.experiments.sweep import run_sweep
from vggnet.experiments.verdicts import undecidable_hypotheses, verdicts_markdown


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid of configs x seeds (resumable; see configs/studies/)")
    p.add_argument("spec", help="sweep spec YAML (base, grid, seeds, out, budgets)")
    p.add_argument("--budget", help="a named budget from the spec, e.g. 'small'")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="run only these of the spec's seeds (a study split across sittings)")
    p.add_argument("--jobs", type=int, default=1, help="cells run side by side (default 1)")
    p.add_argument("--out", help="sweep directory (default: the spec's out, suffixed with the budget)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells, the number of runs and the estimated wall time with --jobs, and exit")
    p.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    p.set_defaults(func=run)


def _interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: stop the cells, keep the index consistent
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, budget=args.budget, out=args.out, only_seeds=args.seeds)
    cells = expand(spec)
    if args.dry_run:
        for cell in cells:
            after = f"  (after {', '.join(cell.depends)})" if cell.depends else ""
            print(f"{cell.dir}{after}")
        from vggnet.experiments.estimate import estimate, hours

        stop = spec.report.get("stop_epoch")
        _, bound, stopped = estimate(spec, cells, jobs=args.jobs, stop_epoch=stop)
        points = len({cell.key_json for cell in cells})
        line = f"{points} cells x {len(spec.seeds)} seeds = {len(cells)} runs in {spec.out}; estimated {hours(bound)}"
        line += f" with --jobs {args.jobs} on {os.cpu_count()} cores (every run to its last epoch)"
        if stop and stopped < bound:
            line += f", {hours(stopped)} if early stopping ends runs at epoch {stop}"
        print(line)
        # the power check is over every seed of the budget, not this sitting's
        study = load_spec(args.spec, budget=args.budget, out=args.out) if args.seeds else spec
        weak = undecidable_hypotheses(study.hypotheses, expand(study), budget=args.budget)
        if weak:
            noun = "hypothesis" if len(weak) == 1 else "hypotheses"
            print(f"{len(weak)} pre-registered {noun} cannot be decided with the budget's {len(study.seeds)} seeds, "
                  "whatever the runs show:")
            for claim, why in weak:
                print(f"  - {claim}: {why}")
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    result = run_sweep(spec, jobs=args.jobs, retry_failed=args.retry_failed)
    if spec.report.get("ensembles"):
        from vggnet.experiments.studies import run_ensembles  # needs the eval stack; only when asked

        run_ensembles(result.out)
    report = render_sweep(result.out)
    print("\n" + sweep_markdown(result.out))
    if spec.report.get("paper"):
        print(protocols_markdown(result.out))
    verdicts = verdicts_markdown(result.out)
    if verdicts:
        print("Pre-registered hypotheses:\n" + verdicts)
    counts = ", ".join(f"{v} {k}" for k, v in result.counts.items() if v)
    print(f"sweep {result.out}: {counts}; report: {report}")
    return 0 if result.counts.get("failed", 0) == 0 else 1
