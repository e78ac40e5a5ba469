"""The ranking and pointwise metrics as ``evaluate.Metric`` classes, defined here because ``evaluate.load`` needs
metric scripts that are not shipped offline."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np
import torch

from recpipe.metrics.pointwise import pointwise_metrics
from recpipe.metrics.ranking import (
    ExcludeLists,
    TieBreak,
    check_ks,
    flatten_exclusions,
    ranking_metrics,
    target_ranks,
)

_RANKING_INPUTS = """
Args:
    predictions (`list[list[float]]`): for each user, the scores of every catalogue item.
    references (`list[int]`): for each user, the index of the held-out target item.
    ks (`list[int]`, *optional*): cut-offs; defaults to the ones given at construction ((5, 10, 20)).
    exclude (`list[list[int]]`, *optional*): per-user item indices not to rank (e.g. the history).
    exclude_padding (`bool`, *optional*): exclude item index 0; defaults to the construction value (True).
    tie_break (`str`, *optional*): "pessimistic" (default) or "random" (seeded by the module's `seed`).
Returns:
    recall@k, hr@k, ndcg@k, mrr@k, precision@k for each k, and mrr.
"""

_POINTWISE_INPUTS = """
Args:
    predictions (`list[float]`): predicted probability of the positive class.
    references (`list[int]`): 0/1 labels.
    user_ids (`list`, *optional*): user of every example, in the order of all added examples, for GAUC.
    threshold (`float`, *optional*): decision threshold, 0.5 by default.
Returns:
    auc, gauc and gauc_users (with user_ids), log_loss, precision, recall, f1, accuracy.
"""


class RankingMetric(evaluate.Metric):
    """Full-ranking metrics as an `evaluate.Metric`: one example per user, its scores over the catalogue.

    Args:
        ks (`Sequence[int]`, defaults to `(5, 10, 20)`): Default cut-offs (a `ks` passed to `compute` wins).
        exclude_padding (`bool`, defaults to `True`): Default for excluding item index 0.
        **kwargs: Passed to `evaluate.Metric` (`keep_in_memory`, `seed`, `experiment_id`, ...).
    """

    def __init__(self, ks: Sequence[int] = (5, 10, 20), exclude_padding: bool = True, **kwargs):
        self.ks = check_ks(ks)
        self.exclude_padding = exclude_padding
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Recall/HR, NDCG, MRR and precision at K of one held-out item per user, by full ranking "
            "with pessimistic (or random) tie-breaking; NaN/inf scores raise.",
            citation="",
            inputs_description=_RANKING_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self,
        predictions,
        references,
        ks: Sequence[int] | None = None,
        exclude: ExcludeLists | None = None,
        exclude_padding: bool | None = None,
        tie_break: TieBreak = "pessimistic",
    ) -> dict[str, float]:
        scores = torch.from_numpy(np.asarray(predictions, dtype=np.float32))
        targets = torch.as_tensor(np.asarray(references, dtype=np.int64))
        if scores.dim() != 2:
            raise ValueError("every prediction must hold scores for the same number of items")
        exclude_padding = self.exclude_padding if exclude_padding is None else exclude_padding
        mask = torch.zeros(scores.shape, dtype=torch.bool)
        if exclude_padding:
            mask[:, 0] = True
        if exclude is not None:
            _, rows, cols = flatten_exclusions(exclude, scores.shape[0], scores.shape[1], torch.device("cpu"))
            mask[rows, cols] = True
        generator = torch.Generator().manual_seed(int(self.seed)) if tie_break == "random" else None
        ranks = target_ranks(scores, targets, exclude=mask, tie_break=tie_break, generator=generator)
        return ranking_metrics(ranks, self.ks if ks is None else ks)


class PointwiseMetric(evaluate.Metric):
    """Pointwise (CTR / preference) metrics as an `evaluate.Metric`: AUC, GAUC, log loss, precision/recall/F1."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="AUC (Mann-Whitney, ties as one half), GAUC (per-user AUC weighted by examples), log loss, "
            "and precision/recall/F1/accuracy of the positive class.",
            citation="",
            inputs_description=_POINTWISE_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("float32"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, user_ids=None, threshold: float = 0.5) -> dict[str, float]:
        return pointwise_metrics(references, predictions, user_ids=user_ids, threshold=threshold)
