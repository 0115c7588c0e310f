"""Evaluation: top-k of classifiers (evaluate), frozen-feature probes (probe), cluster pictures (visualize), training
curves (plots). The `armvision eval | probe | visualize | plot` commands call these entry functions."""
from .evaluate import evaluate, evaluate_checkpoint
from .plots import plot_runs, read_log
from .probe import probe_checkpoint
from .visualize import visualize_checkpoint

__all__ = ["evaluate", "evaluate_checkpoint", "plot_runs", "probe_checkpoint", "read_log", "visualize_checkpoint"]
