"""The catalogue's vectors in FAISS: exact inner product by default, HNSW or IVF for large catalogues.

Vectors are indexed under their item index (1..N; new items get N+1, ...), so results map straight back to the
catalogue. Under cosine similarity the vectors are already normalised and inner product is the cosine.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from recpipe.errors import InvalidInputError

INDEX_FILE = "index.faiss"


class ItemIndex:
    def __init__(self, dim: int, kind: str = "flat", nlist: int = 256, hnsw_m: int = 32):
        if kind == "flat":
            base = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        elif kind == "ivf":
            base = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            raise InvalidInputError(f"unknown index kind {kind!r}: flat, hnsw or ivf")
        self.kind, self.dim = kind, dim
        self.index = faiss.IndexIDMap2(base)

    @property
    def size(self) -> int:
        return self.index.ntotal

    def add(self, vectors: np.ndarray, item_indices: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self.index.is_trained:
            self.index.train(vectors)
        self.index.add_with_ids(vectors, np.asarray(item_indices, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int, exclude: list[list[int]] | None = None):
        """Top-``k`` ``(scores, item_indices)`` per query, never returning an excluded item (-1 pads short lists)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        depth = min(k + extra, self.size)
        scores, ids = self.index.search(queries, depth)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for q in range(len(queries)):
            banned = set(exclude[q]) if exclude else ()
            keep = [(s, i) for s, i in zip(scores[q], ids[q]) if i >= 0 and i not in banned][:k]
            if keep:
                out_scores[q, : len(keep)], out_ids[q, : len(keep)] = zip(*keep)
        return out_scores, out_ids

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / "index.json").write_text(json.dumps({"kind": self.kind, "dim": self.dim, "size": self.size}))

    @classmethod
    def load(cls, folder: str | Path) -> ItemIndex:
        folder = Path(folder)
        meta = json.loads((folder / "index.json").read_text())
        obj = cls.__new__(cls)
        obj.kind, obj.dim = meta["kind"], meta["dim"]
        obj.index = faiss.read_index(str(folder / INDEX_FILE))
        return obj
