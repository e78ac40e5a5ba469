"""Pointwise metrics (CTR / preference): AUC, GAUC, log loss, precision/recall/F1/accuracy of binary labels against
predicted probabilities. AUC and log loss are scikit-learn's; GAUC (per-user AUC, which scikit-learn lacks) is
computed here in one vectorised pass."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn import metrics as skm


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _labels_and_probs(labels, probs, check_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    labels, probs = _as_numpy(labels).reshape(-1), _as_numpy(probs).reshape(-1).astype(np.float64)
    if labels.size == 0:
        raise ValueError("got no examples (empty input)")
    if labels.size != probs.size:
        raise ValueError(f"labels ({labels.size}) and probs ({probs.size}) differ in length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, got values {np.unique(labels)[:10].tolist()}")
    if not np.isfinite(probs).all():
        raise ValueError(f"{int((~np.isfinite(probs)).sum())} predicted probabilities are NaN or inf")
    if check_range and ((probs < 0) | (probs > 1)).any():
        raise ValueError("probs must lie in [0, 1] (pass probabilities, not logits)")
    return labels.astype(np.int64), probs


def auc(labels, probs) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``); tied scores count one half.

    Args:
        labels (array-like of shape `[n]`): 0/1 labels.
        probs (array-like of shape `[n]`): Predicted probabilities (any finite scores: only the order matters).

    Returns:
        `float`; NaN, with a warning, if only one class is present.
    """
    labels, probs = _labels_and_probs(labels, probs)
    if labels.min() == labels.max():
        warnings.warn(
            f"AUC is undefined with one class only ({labels.size} examples, all labelled {int(labels[0])}); "
            "returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    return float(skm.roc_auc_score(labels, probs))


def gauc(user_ids, labels, probs) -> tuple[float, int]:
    """Group AUC: per-user AUC averaged with weights equal to the user's number of examples.

    Users whose examples are all of one class have no AUC and are skipped.

    Args:
        user_ids (array-like of shape `[n]`): User of each example (ints or strings).
        labels (array-like of shape `[n]`): 0/1 labels.
        probs (array-like of shape `[n]`): Predicted probabilities.

    Returns:
        `(gauc, num_users)`: the weighted mean, and how many users counted (NaN and 0, with a warning, if none).
    """
    labels, probs = _labels_and_probs(labels, probs)
    user_ids = _as_numpy(user_ids).reshape(-1)
    if user_ids.size != labels.size:
        raise ValueError(f"user_ids ({user_ids.size}) and labels ({labels.size}) differ in length")
    _, users = np.unique(user_ids, return_inverse=True)
    users = users.reshape(-1)
    num_users = int(users.max()) + 1

    # Average ranks within each user: sort by (user, prob); a tie block is a run of equal (user, prob).
    order = np.lexsort((probs, users))
    u_sorted, p_sorted = users[order], probs[order]
    new_block = np.ones(order.size, dtype=bool)
    new_block[1:] = (u_sorted[1:] != u_sorted[:-1]) | (p_sorted[1:] != p_sorted[:-1])
    block = np.cumsum(new_block) - 1
    block_start = np.flatnonzero(new_block)
    block_end = np.append(block_start[1:], order.size)  # exclusive
    position = (block_start[block] + block_end[block] - 1) / 2.0  # 0-based average position in the whole array
    user_start = np.searchsorted(u_sorted, np.arange(num_users))
    rank_in_user = position - user_start[u_sorted] + 1.0

    lab = labels[order]
    num_pos = np.bincount(u_sorted, weights=lab, minlength=num_users)
    count = np.bincount(u_sorted, minlength=num_users).astype(np.float64)
    num_neg = count - num_pos
    pos_rank_sum = np.bincount(u_sorted, weights=rank_in_user * lab, minlength=num_users)
    valid = (num_pos > 0) & (num_neg > 0)
    if not valid.any():
        warnings.warn("GAUC is undefined: no user has both classes; returning NaN", RuntimeWarning, stacklevel=2)
        return float("nan"), 0
    per_user = (pos_rank_sum[valid] - num_pos[valid] * (num_pos[valid] + 1) / 2) / (num_pos[valid] * num_neg[valid])
    return float(np.average(per_user, weights=count[valid])), int(valid.sum())


def log_loss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (scikit-learn's ``log_loss``), with probabilities clipped to `[eps, 1 - eps]` so one
    confident miss stays finite.

    Args:
        labels (array-like of shape `[n]`): 0/1 labels.
        probs (array-like of shape `[n]`): Predicted probabilities of the positive class, in [0, 1].
        eps (`float`, defaults to 1e-7): Clipping bound.

    Returns:
        `float` (natural log).
    """
    labels, probs = _labels_and_probs(labels, probs, check_range=True)
    return float(skm.log_loss(labels, np.clip(probs, eps, 1 - eps), labels=[0, 1]))


def classification_report(labels, probs, threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall, F1 of the positive class and accuracy, predicting positive when `probs >= threshold`.

    Precision (no positive predictions), recall (no positive labels) and F1 are 0.0 when undefined.

    Args:
        labels (array-like of shape `[n]`): 0/1 labels.
        probs (array-like of shape `[n]`): Predicted probabilities, in [0, 1].
        threshold (`float`, defaults to 0.5): Decision threshold.

    Returns:
        `dict[str, float]` with `precision`, `recall`, `f1`, `accuracy`.
    """
    labels, probs = _labels_and_probs(labels, probs, check_range=True)
    predicted = probs >= threshold
    positive = labels == 1
    tp = int((predicted & positive).sum())
    precision = tp / int(predicted.sum()) if predicted.any() else 0.0
    recall = tp / int(positive.sum()) if positive.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    accuracy = float((predicted == positive).mean())
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def pointwise_metrics(
    labels, probs, user_ids=None, prefix: str = "", threshold: float = 0.5, eps: float = 1e-7
) -> dict[str, float]:
    """AUC, GAUC, log loss, precision, recall, F1 and accuracy in one dict.

    Args:
        labels (array-like of shape `[n]`): 0/1 labels.
        probs (array-like of shape `[n]`): Predicted probabilities, in [0, 1].
        user_ids (array-like of shape `[n]`, *optional*): Users, for GAUC; without them `gauc` is left out.
        prefix (`str`, defaults to `""`): Added before every key.
        threshold (`float`, defaults to 0.5): Decision threshold for precision/recall/F1/accuracy.
        eps (`float`, defaults to 1e-7): Clipping bound of the log loss.

    Returns:
        `dict[str, float]` with `auc`, `gauc` and `gauc_users` (users that counted; with `user_ids`), `log_loss`,
        `precision`, `recall`, `f1`, `accuracy`.
    """
    out = {"auc": auc(labels, probs)}
    if user_ids is not None:
        out["gauc"], out["gauc_users"] = gauc(user_ids, labels, probs)
    out["log_loss"] = log_loss(labels, probs, eps=eps)
    out.update(classification_report(labels, probs, threshold=threshold))
    return {f"{prefix}{k}": v for k, v in out.items()}
