"""What a checkpoint carries for inference besides its weights, so that it serves from any folder without the
prepared dataset and without re-encoding the catalogue:

- ``catalogue.parquet``: ``item_index`` (1..N), ``item_id``, ``title``, ``text`` (the text new items are compared by);
- ``known_users.parquet``: ``user_id``, ``history`` (the last ``max_history`` items up to and including the user's
  last known one, as the user tower reads them) and ``known_items`` (every item the user had);
- ``item_vectors.safetensors``: the catalogue's scoring vectors (row k = item index k, row 0 padding), exactly the
  table evaluation ranks with;
- ``index.faiss`` + ``index.json``: those vectors in a FAISS index (``recpipe.index``).

Written at the end of fine-tuning and by ``recpipe export``; read by ``recpipe.recommender.Recommender``. Only torch,
safetensors, pyarrow and faiss are needed to read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from recpipe.index import INDEX_FILE, ItemIndex

CATALOGUE_FILE = "catalogue.parquet"
USERS_FILE = "known_users.parquet"
VECTORS_FILE = "item_vectors.safetensors"


def has_inference_files(folder: str | Path) -> bool:
    folder = Path(folder)
    return all((folder / name).is_file() for name in (CATALOGUE_FILE, USERS_FILE, VECTORS_FILE, INDEX_FILE))


def known_users(test_split, max_history: int) -> dict[str, tuple[list[int], list[int]]]:
    """``user_id -> (history, known_items)`` from a prepared test split: the test example's history plus its target
    (the user's whole known sequence, cut to ``max_history``) and every item the user had."""
    users = {}
    for user, history, target, known in zip(
        test_split["user_id"], test_split["history"], test_split["target"], test_split["known_items"]
    ):
        sequence = [*history, target][-max_history:]
        users[user] = (sequence, sorted({*known, *history, target}))
    return users


def write_inference_files(
    folder: str | Path,
    items: dict[str, list],
    users: dict[str, tuple[list[int], list[int]]],
    table: torch.Tensor,
    index_kind: str = "flat",
) -> list[Path]:
    """Write the catalogue (``items``: columns ``item_id``, ``title``, ``text``), the known users, the scoring
    vectors ``table`` (``[N + 1, d]``) and their FAISS index into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(items["item_id"])
    if table.shape[0] != n + 1:
        raise ValueError(f"{table.shape[0]} item vectors for a catalogue of {n} items (+ padding row)")
    catalogue = pa.table(
        {
            "item_index": pa.array(range(1, n + 1), pa.int32()),
            "item_id": pa.array([str(i) for i in items["item_id"]], pa.string()),
            "title": pa.array([str(t or "") for t in items["title"]], pa.string()),
            "text": pa.array([str(t or "") for t in items["text"]], pa.string()),
        }
    )
    pq.write_table(catalogue, folder / CATALOGUE_FILE)
    ids = list(users)
    known = pa.table(
        {
            "user_id": pa.array(ids, pa.string()),
            "history": pa.array([users[u][0] for u in ids], pa.list_(pa.int32())),
            "known_items": pa.array([users[u][1] for u in ids], pa.list_(pa.int32())),
        }
    )
    pq.write_table(known, folder / USERS_FILE)
    vectors = table.detach().float().cpu().contiguous()
    save_file({"item_vectors": vectors}, str(folder / VECTORS_FILE), metadata={"num_items": str(n)})
    index = ItemIndex(vectors.shape[1], kind=index_kind)
    index.add(vectors[1:].numpy(), np.arange(1, n + 1))
    index.save(folder)
    return [folder / name for name in (CATALOGUE_FILE, USERS_FILE, VECTORS_FILE, INDEX_FILE)]


def read_inference_files(folder: str | Path):
    """``(items, users, table, index)``: the catalogue as columns, ``user_id -> (history, known_items)``, the
    scoring vectors and the FAISS index, as ``write_inference_files`` wrote them."""
    folder = Path(folder)
    # ParquetFile rather than read_table: the latter imports pyarrow.dataset (and pandas), ~0.7 s of a cold start
    items = pq.ParquetFile(folder / CATALOGUE_FILE).read().to_pydict()
    known = pq.ParquetFile(folder / USERS_FILE).read().to_pydict()
    users = {u: (h, k) for u, h, k in zip(known["user_id"], known["history"], known["known_items"])}
    table = load_file(str(folder / VECTORS_FILE))["item_vectors"]
    return items, users, table, ItemIndex.load(folder)
