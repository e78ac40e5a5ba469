"""Known-item exclusion inside the FAISS search: every index kind returns exactly what exact search with the same
exclusions returns (the approximate kinds set to search exhaustively on this tiny catalogue)."""

import numpy as np
import pytest

from recpipe.index import ItemIndex

N, DIM, K = 400, 16, 10


def exact_top_k(items, queries, exclude, k):
    scores = queries @ items.T
    for q, banned in enumerate(exclude):
        scores[q, np.asarray(banned, dtype=int) - 1] = -np.inf
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, ids, 1)
    return top, np.where(np.isfinite(top), ids + 1, -1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, DIM))
    items = (centres[rng.integers(8, size=N)] + 0.3 * rng.normal(size=(N, DIM))).astype("float32")
    queries = (centres[rng.integers(8, size=25)] + 0.3 * rng.normal(size=(25, DIM))).astype("float32")
    # the exclusions hit each query's own best items, so a filter applied after a top-k search would come up short
    best = np.argsort(-(queries @ items.T), axis=1)[:, :60] + 1
    exclude = [best[q, : 5 * (q % 12)].tolist() for q in range(len(queries))]
    exclude[3] = []
    return items, queries, exclude


@pytest.mark.parametrize(
    "kind, options",
    [("flat", {}), ("hnsw", {"ef_search": N, "ef_construction": 200}), ("ivf", {"nlist": 8, "nprobe": 8})],
)
def test_exclusion_inside_the_index_matches_exact_search(data, kind, options):
    items, queries, exclude = data
    index = ItemIndex(DIM, kind=kind, **options)
    index.add(items, np.arange(1, N + 1))
    scores, ids = index.search(queries, K, exclude)
    want_scores, want_ids = exact_top_k(items, queries, exclude, K)
    assert (ids == want_ids).all()
    assert np.allclose(scores, want_scores, atol=1e-4)
    for q, banned in enumerate(exclude):
        assert not set(ids[q]) & set(banned)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_short_lists_are_padded_when_exclusions_leave_fewer_than_k(kind):
    rng = np.random.default_rng(1)
    items = rng.normal(size=(12, 4)).astype("float32")
    index = ItemIndex(4, kind=kind, nlist=2, nprobe=2)
    index.add(items, np.arange(1, 13))
    scores, ids = index.search(items[:2], 5, [list(range(1, 10)), []])
    assert sorted(ids[0][:3]) == [10, 11, 12] and (ids[0][3:] == -1).all() and np.isneginf(scores[0][3:]).all()
    assert (ids[1] > 0).all()


def test_save_and_load_keep_the_search_settings(data, tmp_path):
    items, queries, exclude = data
    index = ItemIndex(DIM, kind="ivf", nlist=8, nprobe=8)
    index.add(items, np.arange(1, N + 1))
    index.save(tmp_path)
    loaded = ItemIndex.load(tmp_path)
    assert (loaded.nlist, loaded.nprobe, loaded.size) == (8, 8, N)
    assert (loaded.search(queries, K, exclude)[1] == index.search(queries, K, exclude)[1]).all()
