"""The catalogue's vectors in FAISS: exact inner product by default, HNSW or IVF for large catalogues.

Vectors are indexed under their item index (1..N; new items get N+1, ...), so results map straight back to the
catalogue. Under cosine similarity the vectors are already normalised and inner product is the cosine.

Known items are excluded inside the search: FAISS skips them while it scans (an ``IDSelector`` in the search
parameters), so a user with a thousand known items still gets ``k`` answers from an approximate index, and no result
list is filtered afterwards. Defaults from a sweep at a million items (BENCHMARKS.md, "Scale"; Recall@10 against
exact search / p99 of a single query, on 2 busy cores): HNSW with M = 32 and efSearch = 512 (0.977 / 4.9 ms;
efSearch 128: 0.885); IVF with about 4·sqrt(N) lists and a 16th of them probed (256 of 3,917: 0.978 / 10.7 ms).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import faiss
import numpy as np

from recpipe.errors import InvalidInputError

INDEX_FILE = "index.faiss"
KINDS = ("flat", "hnsw", "ivf")


class ItemIndex:
    """A FAISS index of item vectors under their item indices.

    Args:
        dim (`int`): vector size.
        kind (`str`, defaults to `"flat"`): `"flat"` (exact), `"hnsw"` or `"ivf"`.
        nlist (`int`, *optional*): IVF lists; default about 4·sqrt(N) of the first vectors added (at most N).
        hnsw_m (`int`, defaults to 32): HNSW links per node.
        ef_construction (`int`, defaults to 64): HNSW candidate list while building.
        ef_search (`int`, defaults to 512): HNSW candidate list while searching (recall against latency).
        nprobe (`int`, *optional*): IVF lists scanned per query (recall against latency); default a 16th of the
            lists, at least 32.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        nlist: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 64,
        ef_search: int = 512,
        nprobe: int | None = None,
    ):
        if kind not in KINDS:
            raise InvalidInputError(f"unknown index kind {kind!r}: flat, hnsw or ivf")
        self.kind, self.dim, self.nlist = kind, dim, nlist
        self.ef_search, self.nprobe = ef_search, nprobe
        if kind == "flat":
            base = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = ef_construction
        else:
            base = None  # the number of lists depends on the catalogue: built at the first add
        self.index = None if base is None else faiss.IndexIDMap2(base)

    @property
    def size(self) -> int:
        return 0 if self.index is None else self.index.ntotal

    def add(self, vectors: np.ndarray, item_indices: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.index is None:
            nlist = self.nlist or min(round(4 * math.sqrt(len(vectors))), len(vectors) // 39)  # 39 points a list
            self.nlist = max(1, min(nlist, len(vectors)))
            self.nprobe = self.nprobe or min(self.nlist, max(32, self.nlist // 16))
            quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIDMap2(
                faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            )
        if not self.index.is_trained:
            # k-means on 40 points a list (FAISS asks for 39) and 10 iterations: FAISS's own defaults, 256 points and
            # 25 iterations, take the whole of a million-item catalogue and minutes; the lists barely differ
            ivf = faiss.extract_index_ivf(self.index)
            ivf.cp.niter = 10
            sample = vectors[np.random.default_rng(0).permutation(len(vectors))[: 40 * self.nlist]]
            self.index.train(sample)
        self.index.add_with_ids(vectors, np.asarray(item_indices, dtype=np.int64))

    def _params(self, selector=None):
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = self.ef_search
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nprobe
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        return params

    def search(self, queries: np.ndarray, k: int, exclude: list[list[int]] | None = None):
        """Top-``k`` ``(scores, item_indices)`` per query, never returning an excluded item (-1 pads short lists).

        Exclusion happens inside FAISS's scan. A search call takes one set of parameters, so queries with
        exclusions are searched one by one (a serving request is one user; evaluation ranks by matrix products).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        depth = min(k, self.size)
        if depth == 0:
            return out_scores, out_ids
        one_by_one = bool(exclude) and any(len(e) for e in exclude)
        threads = faiss.omp_get_max_threads()
        if one_by_one or len(queries) == 1:
            # FAISS spreads a search over queries: for one query, a second OpenMP thread only waits at the barriers,
            # and on a busy machine that wait alone took 8 ms of CPU and 30 ms a query (0.1 ms with one thread)
            faiss.omp_set_num_threads(1)
        try:
            if not one_by_one:
                out_scores[:, :depth], out_ids[:, :depth] = self.index.search(queries, depth, params=self._params())
            for q, banned in enumerate(exclude if one_by_one else []):
                banned = np.unique(np.asarray(banned, dtype=np.int64))
                keep = faiss.IDSelectorNot(faiss.IDSelectorBatch(banned)) if len(banned) else None
                found = self.index.search(queries[q : q + 1], depth, params=self._params(keep))
                out_scores[q, :depth], out_ids[q, :depth] = found[0][0], found[1][0]
        finally:
            faiss.omp_set_num_threads(threads)
        missing = out_ids < 0  # fewer than k items left to return
        out_scores[missing] = -np.inf
        return out_scores, out_ids

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        meta = {"kind": self.kind, "dim": self.dim, "size": self.size, "nlist": self.nlist}
        meta.update(ef_search=self.ef_search, nprobe=self.nprobe)
        (folder / "index.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: str | Path) -> ItemIndex:
        folder = Path(folder)
        meta = json.loads((folder / "index.json").read_text())
        obj = cls.__new__(cls)
        obj.kind, obj.dim, obj.nlist = meta["kind"], meta["dim"], meta.get("nlist")
        obj.ef_search, obj.nprobe = meta.get("ef_search", 512), meta.get("nprobe") or 32
        obj.index = faiss.read_index(str(folder / INDEX_FILE))
        return obj
