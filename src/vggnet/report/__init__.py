"""Reports, below both a single run (train) and a sweep (experiments):

- rundir.py: reading a run directory (metrics.jsonl, eval.json, config.yaml)
- plots.py: the figures (matplotlib, PNG bytes)
- html.py: the self-contained HTML pieces
- run.py: one run's report.html
"""

from vggnet.report.run import render_run

__all__ = ["render_run"]
