import math

import numpy as np
import pytest
import sklearn.metrics
import torch

from recpipe.metrics import (
    PointwiseMetric,
    RankingMetric,
    auc,
    beyond_accuracy_metrics,
    classification_report,
    full_ranking_metrics,
    gauc,
    log_loss,
    pointwise_metrics,
    ranking_metrics,
    sample_negatives,
    sampled_ranking_metrics,
    target_ranks,
)

# Three users over a 5-item catalogue; the targets' ranks are 2, 0 and 4.
SCORES = torch.tensor(
    [
        [0.1, 0.9, 0.3, 0.5, 0.7],  # target 3 (0.5): 0.9 and 0.7 above -> rank 2
        [0.2, 0.1, 0.8, 0.4, 0.6],  # target 2 (0.8): best -> rank 0
        [0.5, 0.4, 0.3, 0.2, 0.1],  # target 4 (0.1): worst -> rank 4
    ]
)
TARGETS = torch.tensor([3, 2, 4])


def test_target_ranks_by_hand():
    assert target_ranks(SCORES, TARGETS).tolist() == [2, 0, 4]


def test_ranking_metrics_by_hand():
    m = ranking_metrics(torch.tensor([2, 0, 4]), ks=(1, 3))
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["hr@1"] == m["recall@1"]
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(4) + 1) / 3)  # 0.5
    assert m["mrr@3"] == pytest.approx((1 / 3 + 1) / 3)
    assert m["precision@3"] == pytest.approx(2 / 9)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 5) / 3)
    assert set(m) == {f"{name}@{k}" for name in ("recall", "hr", "ndcg", "mrr", "precision") for k in (1, 3)} | {"mrr"}


def test_k_larger_than_catalogue_saturates():
    m = ranking_metrics(target_ranks(SCORES, TARGETS), ks=(10, 50))
    for k in (10, 50):
        assert m[f"recall@{k}"] == 1.0
        assert m[f"ndcg@{k}"] == pytest.approx((1 / math.log2(4) + 1 + 1 / math.log2(6)) / 3)
        assert m[f"mrr@{k}"] == pytest.approx(m["mrr"])
        assert m[f"precision@{k}"] == pytest.approx(1 / k)


def test_prefix_suffix_and_bad_input():
    m = ranking_metrics(torch.tensor([0]), ks=(10,), prefix="eval_", suffix="_x")
    assert set(m) >= {"eval_ndcg@10_x", "eval_mrr_x"}
    with pytest.raises(ValueError, match="empty"):
        ranking_metrics(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="candidates"):
        ranking_metrics(torch.tensor([0, 5]), num_candidates=5)
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics(torch.tensor([0]), ks=(0,))


def test_ties_are_pessimistic_not_optimistic():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.9, 0.1]])
    assert target_ranks(scores, torch.tensor([1])).tolist() == [3]  # 1 higher + 2 tied; optimistic would say 1
    # A collapsed model (all scores equal) must not score: the naive count gives every user rank 0.
    flat = torch.zeros(4, 6)
    targets = torch.tensor([1, 2, 3, 4])
    assert ((flat > flat.gather(1, targets[:, None])).sum(1) == 0).all()  # the naive rank
    assert target_ranks(flat, targets).tolist() == [5, 5, 5, 5]
    assert ranking_metrics(target_ranks(flat, targets), ks=(5,))["recall@5"] == 0.0


def test_random_ties_between_optimistic_and_pessimistic_and_seeded():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.9, 0.1]]).repeat(3000, 1)
    targets = torch.ones(3000, dtype=torch.long)
    ranks = target_ranks(scores, targets, tie_break="random", generator=torch.Generator().manual_seed(0))
    assert set(ranks.tolist()) == {1, 2, 3}
    assert torch.bincount(ranks, minlength=4)[1:].div(3000).sub(1 / 3).abs().max() < 0.04
    again = target_ranks(scores, targets, tie_break="random", generator=torch.Generator().manual_seed(0))
    other = target_ranks(scores, targets, tie_break="random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(ranks, again) and not torch.equal(ranks, other)
    # Without ties, random and pessimistic agree.
    assert torch.equal(target_ranks(SCORES, TARGETS, tie_break="random"), target_ranks(SCORES, TARGETS))


def test_non_finite_rows_raise_with_count():
    scores = torch.rand(4, 5)
    scores[1] = float("nan")
    scores[3, 2] = float("inf")
    with pytest.raises(ValueError, match="2 of 4 score rows"):
        target_ranks(scores, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="1 of 2 score rows"):
        full_ranking_metrics(torch.tensor([[1.0], [float("nan")]]), torch.ones(3, 1), torch.tensor([1, 2]))


def test_non_finite_excluded_entries_are_ignored():
    scores = SCORES.clone()
    scores[:, 0] = float("-inf")  # a model's own padding mask
    exclude = torch.zeros_like(scores, dtype=torch.bool)
    exclude[:, 0] = True
    assert target_ranks(scores, TARGETS, exclude=exclude).tolist() == [2, 0, 3]
    with pytest.raises(ValueError, match="NaN or inf"):
        target_ranks(scores, TARGETS)  # -inf on a ranked item is an error


def test_full_ranking_ignores_non_finite_excluded_items():
    users, items = _toy_vectors()
    expected = full_ranking_metrics(users, items, TARGETS, exclude=[[1], [], [1, 2]], ks=(1, 3))
    items[0, 0] = float("nan")  # padding row
    items[1, 0] = float("inf")  # excluded for users 0 and 2, but ranked for user 1
    with pytest.raises(ValueError, match="1 of 3 score rows"):
        full_ranking_metrics(users, items, TARGETS, exclude=[[1], [], [1, 2]], ks=(1, 3))
    users[1, 0] = 0.0  # user 1's score of item 1 (and padding) is now 0 * inf = NaN
    with pytest.raises(ValueError, match="1 of 3 score rows"):
        full_ranking_metrics(users, items, TARGETS, exclude=[[1], [], [1, 2]], ks=(1, 3))
    assert full_ranking_metrics(users, items, TARGETS, exclude=[[1], [1], [1, 2]], ks=(1, 3)) == expected


def test_exclusions_by_hand():
    exclude = torch.zeros_like(SCORES, dtype=torch.bool)
    exclude[0, 1] = True  # 0.9 above user 0's target
    exclude[2, :4] = True  # everything but user 2's target
    assert target_ranks(SCORES, TARGETS, exclude=exclude).tolist() == [1, 0, 0]


def test_target_excluded_or_out_of_range_raises():
    exclude = torch.zeros_like(SCORES, dtype=torch.bool)
    exclude[1, 2] = True
    with pytest.raises(ValueError, match="excluded for 1 user"):
        target_ranks(SCORES, TARGETS, exclude=exclude)
    with pytest.raises(ValueError, match="out of range"):
        target_ranks(SCORES, torch.tensor([3, 2, 5]))
    users, items = torch.randn(2, 4), torch.randn(6, 4)
    with pytest.raises(ValueError, match="exclusion list of 1 user"):
        full_ranking_metrics(users, items, torch.tensor([3, 4]), exclude=[[1, 2], [4]])
    with pytest.raises(ValueError, match="padding index 0"):
        full_ranking_metrics(users, items, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="out of range"):
        full_ranking_metrics(users, items, torch.tensor([1, 4]), exclude=[[6], []])


def test_single_item_catalogue():
    assert target_ranks(torch.tensor([[3.0]]), torch.tensor([0])).tolist() == [0]
    m = full_ranking_metrics(
        torch.ones(2, 3), torch.ones(1, 3), torch.tensor([0, 0]), exclude_padding=False, ks=(1, 5)
    )
    assert m["recall@1"] == m["ndcg@5"] == m["mrr"] == 1.0
    with pytest.raises(ValueError, match="padding"):
        full_ranking_metrics(torch.ones(2, 3), torch.ones(1, 3), torch.tensor([0, 0]))


def _toy_vectors():
    # Item i has vector e_i, so a user's score of item i is that user's i-th coordinate.
    return SCORES.clone(), torch.eye(5)


def test_full_ranking_matches_hand_values_and_exclusions():
    users, items = _toy_vectors()
    # Padding excluded: user 2's target moves from rank 4 to 3; others unchanged.
    m = full_ranking_metrics(users, items, TARGETS, ks=(1, 3))
    assert m == ranking_metrics(torch.tensor([2, 0, 3]), ks=(1, 3))
    # Empty history excludes nothing beyond padding; history lists lift the target above excluded items.
    m_hist = full_ranking_metrics(users, items, TARGETS, exclude=[[], [], []], ks=(1, 3))
    assert m_hist == m
    m_hist = full_ranking_metrics(users, items, TARGETS, exclude=[[1], [], [1, 2]], ks=(1, 3))
    assert m_hist == ranking_metrics(torch.tensor([1, 0, 1]), ks=(1, 3))
    m_nopad = full_ranking_metrics(users, items, TARGETS, exclude_padding=False, ks=(1, 3))
    assert m_nopad == ranking_metrics(torch.tensor([2, 0, 4]), ks=(1, 3))


def test_padding_never_recommended():
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(50, 8, generator=gen), torch.randn(30, 8, generator=gen)
    items[0] = users.mean(0) * 100  # padding would top every list
    targets = torch.randint(1, 30, (50,), generator=gen)
    m, topk = full_ranking_metrics(users, items, targets, ks=(5, 10), return_topk=True)
    assert topk.shape == (50, 10) and not (topk == 0).any()
    _, topk_pad = full_ranking_metrics(users, items, targets, ks=(5, 10), return_topk=True, exclude_padding=False)
    assert (topk_pad[:, 0] == 0).float().mean() > 0.5
    scores = users @ items.T
    exclude = torch.zeros_like(scores, dtype=torch.bool)
    exclude[:, 0] = True
    assert m == ranking_metrics(target_ranks(scores, targets, exclude=exclude), ks=(5, 10))


def test_topk_marks_missing_slots():
    users, items = _toy_vectors()
    _, topk = full_ranking_metrics(users, items, TARGETS, exclude=[[1, 2], [], [1, 2, 3]], ks=(4,), return_topk=True)
    assert topk.tolist() == [[4, 3, -1, -1], [2, 4, 3, 1], [4, -1, -1, -1]]


def _tied_case(seed: int, n_users: int, n_items: int, max_excluded: int):
    """Small integer vectors (exact dot products in float32, many ties), targets and per-user exclusions."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(-2, 3, (n_users, 4), generator=gen).float()
    items = torch.randint(-2, 3, (n_items, 4), generator=gen).float()
    targets = torch.randint(1, n_items, (n_users,), generator=gen)
    exclude = [
        [i for i in torch.randperm(n_items, generator=gen)[: u % max_excluded].tolist() if i != t]
        for u, t in enumerate(targets)
    ]
    return users, items, targets, exclude


@pytest.mark.parametrize("tie_break", ["pessimistic", "random"])
def test_chunked_equals_unchunked(tie_break):
    users, items, targets, exclude = _tied_case(seed=0, n_users=203, n_items=57, max_excluded=9)
    results = [
        full_ranking_metrics(
            users,
            items,
            targets,
            exclude=exclude,
            ks=(1, 5, 10),
            chunk_size=chunk,
            tie_break=tie_break,
            generator=torch.Generator().manual_seed(3),
        )
        for chunk in (7, 64, 1024)
    ]
    assert results[0] == results[1] == results[2]
    # And the same as ranking the dense score matrix directly.
    exclude_mask = torch.zeros(203, 57, dtype=torch.bool)
    exclude_mask[:, 0] = True
    for u, items_u in enumerate(exclude):
        exclude_mask[u, items_u] = True
    ranks = target_ranks(
        users @ items.T, targets, exclude_mask, tie_break=tie_break, generator=torch.Generator().manual_seed(3)
    )
    assert results[0] == ranking_metrics(ranks, ks=(1, 5, 10))


def test_random_scores_score_at_chance():
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 20000, 101  # 100 rankable items besides padding
    users, items = torch.randn(num_users, 16, generator=gen), torch.randn(num_items, 16, generator=gen)
    targets = torch.randint(1, num_items, (num_users,), generator=gen)
    m = full_ranking_metrics(users, items, targets, ks=(10,))
    n = num_items - 1
    assert m["recall@10"] == pytest.approx(10 / n, abs=0.01)
    assert m["ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 2) for r in range(10)) / n, abs=0.01)
    assert m["mrr"] == pytest.approx(sum(1 / (r + 1) for r in range(n)) / n, abs=0.01)


def test_shuffled_targets_score_at_chance():
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 5000, 201
    items = torch.randn(num_items, 32, generator=gen)
    targets = torch.randint(1, num_items, (num_users,), generator=gen)
    users = items[targets] + 0.5 * torch.randn(num_users, 32, generator=gen)  # a model that found the target
    good = full_ranking_metrics(users, items, targets, ks=(10,))
    shuffled = full_ranking_metrics(users, items, targets[torch.randperm(num_users, generator=gen)], ks=(10,))
    assert good["recall@10"] > 0.9
    assert shuffled["recall@10"] == pytest.approx(10 / (num_items - 1), abs=0.015)


def test_beyond_accuracy_by_hand():
    topk = torch.tensor([[1, 2], [1, 3], [1, -1]])
    popularity = torch.tensor([0.0, 10, 5, 1, 0])
    m = beyond_accuracy_metrics(topk, num_items=4, item_popularity=popularity, ks=(1, 2))
    assert m["coverage@1"] == pytest.approx(1 / 4)
    assert m["coverage@2"] == pytest.approx(3 / 4)
    assert m["avg_popularity@1"] == pytest.approx(1.0)
    assert m["avg_popularity@2"] == pytest.approx((10 + 5 + 10 + 1 + 10) / 5 / 10)
    users, items = _toy_vectors()
    full = full_ranking_metrics(users, items, TARGETS, ks=(1, 2), item_popularity=torch.tensor([0.0, 1, 2, 3, 4]))
    # Top-1 lists: user 0 -> 1, user 1 -> 2, user 2 -> 1 (padding excluded): 2 of 4 items, popularities 1, 2, 1.
    assert full["coverage@1"] == pytest.approx(2 / 4)
    assert full["avg_popularity@1"] == pytest.approx((1 + 2 + 1) / 3 / 4)


def test_sample_negatives_respects_exclusions():
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(1, 40, (300,), generator=gen)
    exclude = [list(range(1, 1 + u % 10)) for u in range(300)]
    exclude = [[i for i in e if i != t] for e, t in zip(exclude, targets.tolist())]
    neg = sample_negatives(40, targets, 20, exclude=exclude, generator=torch.Generator().manual_seed(1), chunk_size=64)
    assert neg.shape == (300, 20)
    assert not (neg == targets[:, None]).any() and not (neg == 0).any()
    for u in range(300):
        assert len(set(neg[u].tolist())) == 20 and not set(neg[u].tolist()) & set(exclude[u])
    again = sample_negatives(40, targets, 20, exclude=exclude, generator=torch.Generator().manual_seed(1))
    assert torch.equal(neg, again)
    with pytest.raises(ValueError, match="only"):
        sample_negatives(5, torch.tensor([1]), 4)  # items 2, 3, 4 only


def test_popularity_sampling_follows_popularity():
    popularity = torch.tensor([100.0, 0, 1, 1, 1, 50, 50])
    targets = torch.full((4000,), 6)
    gen = torch.Generator().manual_seed(0)
    neg = sample_negatives(7, targets, 1, strategy="popularity", popularity=popularity, generator=gen)
    counts = torch.bincount(neg.reshape(-1), minlength=7)
    assert counts[0] == counts[1] == counts[6] == 0  # padding, zero popularity, target
    assert counts[5] / 4000 == pytest.approx(50 / 53, abs=0.02)  # proportional to popularity among the rest
    neg = sample_negatives(7, targets, 4, strategy="popularity", popularity=popularity, generator=gen)
    assert torch.equal(neg.sort(1).values, torch.tensor([[2, 3, 4, 5]]).expand(4000, 4))  # without replacement
    with pytest.raises(ValueError, match="popularity"):
        sample_negatives(7, torch.tensor([1]), 2, strategy="popularity")


def test_sampled_metric_keys_and_values():
    target_scores = torch.tensor([0.5, 0.95])
    negatives = torch.tensor([[0.9, 0.1, 0.5], [0.1, 0.2, 0.3]])  # ranks 2 (pessimistic tie) and 0
    m = sampled_ranking_metrics(target_scores, negatives, ks=(1, 10))
    assert m["recall@1_sampled3"] == pytest.approx(0.5)
    assert m["ndcg@10_sampled3"] == pytest.approx((1 / math.log2(4) + 1) / 2)
    assert all("_sampled3" in key for key in m)
    m_pop = sampled_ranking_metrics(target_scores, negatives, ks=(10,), strategy="popularity", prefix="eval_")
    assert "eval_ndcg@10_sampled3pop" in m_pop and "eval_mrr_sampled3pop" in m_pop


def test_auc_by_hand_and_sklearn():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    probs = np.round(np.clip(0.3 * labels + rng.random(500) * 0.7, 0, 1), 1)  # rounding makes many ties
    assert auc(labels, probs) == pytest.approx(sklearn.metrics.roc_auc_score(labels, probs))
    assert auc(torch.tensor(labels), torch.tensor(probs)) == pytest.approx(
        sklearn.metrics.roc_auc_score(labels, probs)
    )


def test_auc_one_class_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="one class"):
        assert math.isnan(auc([1, 1, 1], [0.2, 0.5, 0.9]))


def test_gauc_by_hand_and_against_per_user_sklearn():
    users = ["a", "a", "b", "b", "b", "c", "c"]
    labels = [1, 0, 1, 0, 0, 1, 1]  # user c has one class: skipped
    probs = [0.9, 0.1, 0.2, 0.5, 0.1, 0.3, 0.4]
    value, counted = gauc(users, labels, probs)
    assert counted == 2
    assert value == pytest.approx((2 * 1.0 + 3 * 0.5) / 5)

    rng = np.random.default_rng(1)
    user_ids = rng.integers(0, 60, 2000)
    labels = rng.integers(0, 2, 2000)
    probs = np.round(rng.random(2000) * 0.6 + 0.4 * labels, 1)
    value, counted = gauc(user_ids, labels, probs)
    aucs, weights = [], []
    for u in np.unique(user_ids):
        mask = user_ids == u
        if len(np.unique(labels[mask])) == 2:
            aucs.append(sklearn.metrics.roc_auc_score(labels[mask], probs[mask]))
            weights.append(mask.sum())
    assert counted == len(aucs)
    assert value == pytest.approx(np.average(aucs, weights=weights))


def test_gauc_no_user_with_both_classes():
    with pytest.warns(RuntimeWarning, match="GAUC"):
        value, counted = gauc([1, 2], [1, 0], [0.3, 0.4])
    assert math.isnan(value) and counted == 0


def test_log_loss_by_hand_and_sklearn():
    assert log_loss([1, 0], [0.8, 0.3]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))  # clipped, finite
    rng = np.random.default_rng(2)
    labels, probs = rng.integers(0, 2, 300), rng.random(300)
    assert log_loss(labels, probs) == pytest.approx(sklearn.metrics.log_loss(labels, probs))
    with pytest.raises(ValueError, match="logits"):
        log_loss([1, 0], [2.3, -1.0])


def test_classification_report_by_hand_and_sklearn():
    report = classification_report([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])
    assert report == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.5})
    assert classification_report([1], [0.5])["recall"] == 1.0  # threshold is inclusive
    rng = np.random.default_rng(3)
    labels, probs = rng.integers(0, 2, 300), rng.random(300)
    p, r, f, _ = sklearn.metrics.precision_recall_fscore_support(labels, probs >= 0.3, average="binary")
    report = classification_report(labels, probs, threshold=0.3)
    assert report == pytest.approx(
        {"precision": p, "recall": r, "f1": f, "accuracy": sklearn.metrics.accuracy_score(labels, probs >= 0.3)}
    )
    assert classification_report([0, 1], [0.1, 0.2]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 0.5}


def test_pointwise_metrics_keys_and_validation():
    labels, probs, users = [1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6], [7, 7, 8, 8]
    m = pointwise_metrics(labels, probs, user_ids=users, prefix="eval_")
    assert set(m) == {
        f"eval_{k}" for k in ("auc", "gauc", "gauc_users", "log_loss", "precision", "recall", "f1", "accuracy")
    }
    assert m["eval_auc"] == pytest.approx(0.75) and m["eval_gauc"] == pytest.approx(0.5) and m["eval_gauc_users"] == 2
    assert "gauc" not in pointwise_metrics(labels, probs)
    with pytest.raises(ValueError, match="NaN"):
        pointwise_metrics([1, 0], [float("nan"), 0.1])
    with pytest.raises(ValueError, match="0/1"):
        pointwise_metrics([2, 0], [0.5, 0.1])
    with pytest.raises(ValueError, match="length"):
        pointwise_metrics([1, 0, 1], [0.5, 0.1])


def test_ranking_metric_wrapper_equals_functions(tmp_path):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(12, 9, generator=gen)
    scores[:, 3] = scores[:, 4]  # ties
    targets = torch.randint(1, 9, (12,), generator=gen)
    exclude = torch.zeros_like(scores, dtype=torch.bool)
    exclude[:, 0] = True
    expected = ranking_metrics(target_ranks(scores, targets, exclude=exclude), ks=[1, 5])

    metric = RankingMetric(cache_dir=str(tmp_path))
    result = metric.compute(predictions=scores.tolist(), references=targets.tolist(), ks=[1, 5])
    assert result == pytest.approx(expected)

    metric = RankingMetric(ks=(1, 5), keep_in_memory=True)
    metric.add_batch(predictions=scores[:5].tolist(), references=targets[:5].tolist())
    metric.add_batch(predictions=scores[5:].tolist(), references=targets[5:].tolist())
    assert metric.compute() == pytest.approx(expected)

    history = [[i for i in (1, 2) if i != t] for t in targets.tolist()]
    for u, h in enumerate(history):
        exclude[u, h] = True
    with_history = ranking_metrics(target_ranks(scores, targets, exclude=exclude), ks=[10])
    result = RankingMetric(keep_in_memory=True).compute(
        predictions=scores.tolist(), references=targets.tolist(), ks=[10], exclude=history
    )
    assert result == pytest.approx(with_history)


def test_pointwise_metric_wrapper_equals_functions():
    rng = np.random.default_rng(4)
    labels, probs, users = rng.integers(0, 2, 200), rng.random(200).astype(np.float32), rng.integers(0, 10, 200)
    result = PointwiseMetric(keep_in_memory=True).compute(
        predictions=probs.tolist(), references=labels.tolist(), user_ids=users.tolist()
    )
    assert result == pytest.approx(pointwise_metrics(labels, probs, user_ids=users))


@pytest.mark.parametrize("tie_break", ["pessimistic", "random"])
def test_blocked_catalogue_equals_unblocked(tie_break):
    """The catalogue scored a block of items at a time (memory bounded) gives exactly the unblocked metrics."""
    users, items, targets, exclude = _tied_case(seed=1, n_users=150, n_items=97, max_excluded=11)  # ties across blocks

    def metrics(u, i, block, **kw):
        return full_ranking_metrics(
            u,
            i,
            targets,
            exclude=exclude,
            ks=(1, 5, 10),
            chunk_size=64,
            tie_break=tie_break,
            item_block_size=block,
            generator=torch.Generator().manual_seed(3),
            **kw,
        )

    whole = metrics(users, items, None)
    assert whole["recall@10"] > 0
    for block in (1, 7, 32, 96, 97):
        assert metrics(users, items, block) == whole
    # float vectors (no ties): the top-k lists and the beyond-accuracy metrics agree too
    gen = torch.Generator().manual_seed(1)
    users, items = torch.randn(150, 8, generator=gen), torch.randn(97, 8, generator=gen)
    popularity = torch.randint(1, 50, (97,), generator=gen)
    whole, whole_topk = metrics(users, items, None, item_popularity=popularity, return_topk=True)
    for block in (1, 13, 50):
        blocked, blocked_topk = metrics(users, items, block, item_popularity=popularity, return_topk=True)
        assert blocked == whole and torch.equal(blocked_topk, whole_topk)
