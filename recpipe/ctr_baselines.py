"""Baselines for the pointwise preference task, scored by the same metric code as the models.

- ``history_like_rate``: p(like) = the share of likes in the example's own history (smoothed); needs no training.
- ``item_like_rate``: the candidate's like rate in the training split, shrunk towards the global rate.
- ``logistic_regression``: scikit-learn's logistic regression on (history like rate, item like rate — on the training
  rows from earlier training rows only, so a row never sees its own label —, log item count).
"""

from __future__ import annotations

import numpy as np

from recpipe.ctr_features import item_like_counts, item_like_rate, ordered_item_like_rate
from recpipe.metrics import pointwise_metrics


def _history_rate(split) -> np.ndarray:
    return np.array([(sum(h) + 1) / (len(h) + 2) for h in split["history_liked"]])


def _item_count(split, counts) -> np.ndarray:
    return np.log1p([counts.get(item, (0, 0))[1] for item in split["item_id"]])


def ctr_baselines(train, test, prefix: str = "test_") -> dict[str, dict[str, float]]:
    """Metrics of every baseline on ``test``, fitted on ``train``."""
    from sklearn.linear_model import LogisticRegression

    labels, users = np.asarray(test["label"]), list(test["user_id"])
    counts, prior = item_like_counts(train)
    out = {
        "history_like_rate": pointwise_metrics(labels, _history_rate(test), users, prefix=prefix),
        "item_like_rate": pointwise_metrics(labels, item_like_rate(test, counts, prior), users, prefix=prefix),
    }

    def features(split, item_rate):
        return np.stack([_history_rate(split), item_rate, _item_count(split, counts)], 1)

    train_labels = np.asarray(train["label"])
    if len(set(train_labels.tolist())) == 2:
        model = LogisticRegression().fit(features(train, ordered_item_like_rate(train, prior)), train_labels)
        probs = model.predict_proba(features(test, item_like_rate(test, counts, prior)))[:, 1]
        out["logistic_regression"] = pointwise_metrics(labels, probs, users, prefix=prefix)
    return out
