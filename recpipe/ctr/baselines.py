"""Baselines for the pointwise preference task, scored by the same metric code as the models.

- ``history_like_rate``: p(like) = the share of likes in the example's own history (smoothed); needs no training.
- ``item_like_rate``: the candidate's like rate among the training examples' marks (labels and history marks),
  shrunk towards the overall rate (:mod:`recpipe.ctr.features`).
- ``logistic_regression``: scikit-learn's logistic regression on the models' wide-term inputs, the log-odds of the
  history like rate and of the item like rate (cross-fitted by user on the training rows, so a row never sees its
  own label): the wide term alone, without the text.
"""

from __future__ import annotations

import numpy as np

from recpipe.ctr.features import (
    cross_fitted_item_like_rate,
    history_like_rate,
    item_like_counts,
    item_like_rate,
    logit,
)
from recpipe.metrics import pointwise_metrics


def ctr_baselines(train, test, prefix: str = "test_") -> dict[str, dict[str, float]]:
    """Metrics of every baseline on ``test``, fitted on ``train``."""
    from sklearn.linear_model import LogisticRegression

    labels, users = np.asarray(test["label"]), list(test["user_id"])
    counts, prior = item_like_counts(train)
    out = {
        "history_like_rate": pointwise_metrics(labels, history_like_rate(test["history_liked"]), users, prefix=prefix),
        "item_like_rate": pointwise_metrics(labels, item_like_rate(test, counts, prior), users, prefix=prefix),
    }

    def features(split, item_rate):  # the wide term's two inputs, as log-odds
        return np.stack([logit(history_like_rate(split["history_liked"])), logit(item_rate)], 1)

    train_labels = np.asarray(train["label"])
    if len(set(train_labels.tolist())) == 2:
        model = LogisticRegression().fit(features(train, cross_fitted_item_like_rate(train, prior)), train_labels)
        probs = model.predict_proba(features(test, item_like_rate(test, counts, prior)))[:, 1]
        out["logistic_regression"] = pointwise_metrics(labels, probs, users, prefix=prefix)
    return out
