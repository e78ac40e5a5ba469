"""The vectorised prepare (no Python loop over users) gives exactly what a plain per-user reading of its documented
steps gives: the same splits, row for row, and the same counts."""

from collections import Counter

import numpy as np
import pytest
from helpers import make_tables, random_rows

from recpipe.data import PrepareConfig, prepare


def reference(rows, item_ids, cfg):
    """The steps of ``recpipe.data.prepare``, one user at a time."""
    seen, kept = set(), []
    for row_no, (u, i, t, r) in enumerate(rows):
        if (u, i, t) not in seen:
            seen.add((u, i, t))
            kept.append((row_no, u, i, t, r))
    kept = [k for k in kept if k[2] in set(item_ids)]
    if cfg.rating_threshold is not None:
        kept = [k for k in kept if k[4] >= cfg.rating_threshold]
    while True:
        users, items = Counter(k[1] for k in kept), Counter(k[2] for k in kept)
        still = [
            k for k in kept if users[k[1]] >= cfg.min_user_interactions and items[k[2]] >= cfg.min_item_interactions
        ]
        if len(still) == len(kept):
            break
        kept = still
    used = {k[2] for k in kept}
    catalogue = [i for i in dict.fromkeys(item_ids) if i in used]
    index = {i: n + 1 for n, i in enumerate(catalogue)}
    seqs = {}
    for _, u, i, t, _ in sorted(kept, key=lambda k: (k[1], k[3], k[0])):
        seqs.setdefault(u, []).append((index[i], t))
    splits = {
        s: {"user_id": [], "history": [], "target": [], "known_items": []} for s in ("valid", "test", "test_cold")
    }
    train = {"user_id": [], "item_ids": []}

    def example(split, user, before, target, drop=True):
        splits[split]["user_id"].append(user)
        splits[split]["history"].append(before[-cfg.max_history :])
        splits[split]["target"].append(target)
        splits[split]["known_items"].append(sorted(set(before) - ({target} if drop else set())))

    if cfg.split == "temporal":
        ts = np.array([t for s in seqs.values() for _, t in s])
        t_valid, t_test = np.quantile(ts, [1 - cfg.valid_fraction - cfg.test_fraction, 1 - cfg.test_fraction])
        for user, seq in seqs.items():
            items = [i for i, _ in seq]
            n_train = sum(t < t_valid for _, t in seq)
            if n_train >= 2:
                train["user_id"].append(user)
                train["item_ids"].append(items[:n_train])
            for pos in range(max(n_train, 1), len(seq)):
                example("valid" if seq[pos][1] < t_test else "test", user, items[:pos], items[pos])
        return train, splits
    cold = set()
    if cfg.cold_item_fraction:
        rng = np.random.default_rng(cfg.cold_seed)
        n_cold = max(1, int(round(cfg.cold_item_fraction * len(catalogue))))
        cold = set(rng.choice(np.arange(1, len(catalogue) + 1), size=n_cold, replace=False).tolist())
    for user, seq in seqs.items():
        items = [i for i, _ in seq]
        for p in reversed(range(len(items))):
            warm_before = [i for i in items[:p] if i not in cold]
            if items[p] in cold and warm_before:
                example("test_cold", user, warm_before, items[p], drop=False)
                break
        items = [i for i in items if i not in cold]
        if len(items) >= 3:
            train["user_id"].append(user)
            train["item_ids"].append(items[:-2])
            example("valid", user, items[:-2], items[-2])
            example("test", user, items[:-1], items[-1])
    return train, splits


CONFIGS = [
    PrepareConfig(min_user_interactions=1, min_item_interactions=1),
    PrepareConfig(min_user_interactions=3, min_item_interactions=4, max_history=4, on_bad_record="skip"),
    PrepareConfig(min_user_interactions=1, min_item_interactions=1, rating_threshold=3, on_bad_record="skip"),
    PrepareConfig(min_user_interactions=2, min_item_interactions=2, cold_item_fraction=0.2, max_history=5),
    PrepareConfig(min_user_interactions=1, min_item_interactions=1, split="temporal", max_history=3),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["loo", "k-core", "threshold", "cold", "temporal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prepare_matches_a_per_user_reference(cfg, seed):
    rows = random_rows(n_users=25, per_user=8 + 4 * seed, n_items=30, seed=seed, max_time=20 + 100 * seed)
    rows += rows[:4]  # exact duplicates
    item_ids = sorted({r[1] for r in rows})
    item_ids = item_ids[::-1][:-2] + item_ids[:1]  # metadata order is not sorted, one item twice, one missing
    if cfg.on_bad_record == "error":
        rows = [r for r in rows if r[1] in item_ids]
    dd, stats = prepare(make_tables(rows, item_ids=item_ids), cfg)
    train, splits = reference(rows, item_ids, cfg)
    assert dd["train"].to_dict() == train
    for name in ("valid", "test"):
        assert dd[name].to_dict() == splits[name]
    if cfg.cold_item_fraction:
        assert dd["test_cold"].to_dict() == splits["test_cold"]
    assert stats["filtered_out"]["duplicate_interactions"] == 4
