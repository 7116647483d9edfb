"""Evaluation: the paper's test protocols (`protocols`), metrics and error analysis (`metrics`)."""

from vggnet.eval.preprocess import Preprocessing
from vggnet.eval.protocols import (PROTOCOLS, centre, dense, ensemble, evaluate, evaluate_models, fusion,
                                   multi_crop, multi_scale, run_protocol, write_eval)

__all__ = ["PROTOCOLS", "Preprocessing", "centre", "dense", "ensemble", "evaluate", "evaluate_models", "fusion",
           "multi_crop", "multi_scale", "run_protocol", "write_eval"]
