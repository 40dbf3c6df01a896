"""Evaluation: top-K metrics, full-ranking retriever evaluation, two-stage pipeline evaluation."""
from tandem.evaluation.metrics import METRICS, metrics_from_ranks, ranks_of_targets
from tandem.evaluation.ranking import evaluate_batches, full_ranking_metrics, two_stage_metrics

__all__ = [
    "METRICS",
    "metrics_from_ranks",
    "ranks_of_targets",
    "evaluate_batches",
    "full_ranking_metrics",
    "two_stage_metrics",
]
