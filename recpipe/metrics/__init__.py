"""Metrics: full ranking (:mod:`~recpipe.metrics.ranking`), sampled ranking (:mod:`~recpipe.metrics.sampled`),
pointwise CTR metrics (:mod:`~recpipe.metrics.pointwise`) and their ``evaluate.Metric`` wrappers
(:mod:`~recpipe.metrics.hf_evaluate`). Every name is importable from ``recpipe.metrics``."""

from recpipe.metrics.hf_evaluate import PointwiseMetric, RankingMetric
from recpipe.metrics.pointwise import auc, classification_report, gauc, log_loss, pointwise_metrics
from recpipe.metrics.ranking import beyond_accuracy_metrics, full_ranking_metrics, ranking_metrics, target_ranks
from recpipe.metrics.sampled import sample_negatives, sampled_ranking_metrics

__all__ = [
    "target_ranks",
    "ranking_metrics",
    "full_ranking_metrics",
    "beyond_accuracy_metrics",
    "sample_negatives",
    "sampled_ranking_metrics",
    "auc",
    "gauc",
    "log_loss",
    "classification_report",
    "pointwise_metrics",
    "RankingMetric",
    "PointwiseMetric",
]
