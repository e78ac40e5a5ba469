"""Inference: ``Recommender.from_pretrained(checkpoint)`` → ``recommend(history=..., k=10)``,
``recommend(user_id=...)``, ``add_items(ids, texts)`` for cold-start items known by their text alone.

It scores with exactly what evaluation scores with (``recpipe.evaluation.item_vectors`` and the model's last user
state, both through ``RecModel.scoring_vectors``), so a user's served top-K is the ranking evaluation measured.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from recpipe.collators import tokenize_items
from recpipe.data import load_prepared
from recpipe.errors import InvalidInputError, UnknownNameError
from recpipe.evaluation import item_vectors
from recpipe.index import INDEX_FILE, ItemIndex
from recpipe.modeling import length_sorted_batches, load_checkpoint

logger = logging.getLogger(__name__)


class Recommender:
    def __init__(self, model, tokenizer, config: dict, items, users: dict[str, list[int]], index_kind: str = "flat"):
        self.model, self.tokenizer, self.config = model.eval(), tokenizer, config
        self.item_ids: list[str] = ["<pad>", *items["item_id"]]
        self.titles: list[str] = ["", *items["title"]]
        self.texts: list[str] = ["", *items["text"]]
        self._index_of = {item_id: k for k, item_id in enumerate(self.item_ids) if k}
        self._title_index = {t.lower(): k for k, t in enumerate(self.titles) if k and t}
        self.users = users
        self.tokens = (
            tokenize_items(self.texts[1:], tokenizer, model.model_config.max_text_length)
            if model.model_config.use_text
            else None
        )
        self.table = item_vectors(model, self.tokens)  # row k = item index k
        self.index = ItemIndex(self.table.shape[1], kind=index_kind)
        self.index.add(self.table[1:].float().numpy(), np.arange(1, len(self.table)))

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, index_kind: str = "flat", prepared_dir: str | None = None):
        """Load a checkpoint, its catalogue (from the prepared dataset it was trained on) and known users."""
        model, tokenizer, config = load_checkpoint(checkpoint_dir)
        dd, _ = load_prepared(prepared_dir or config["data_args"]["prepared_dir"])
        # a known user's full sequence: the test history plus the test target
        users = {
            u: list(h) + [t] for u, h, t in zip(dd["test"]["user_id"], dd["test"]["history"], dd["test"]["target"])
        }
        return cls(model, tokenizer, config, dd["items"], users, index_kind)

    # ---- lookups ----
    def resolve(self, items: list[str | int]) -> list[int]:
        """Item ids or titles (case-insensitive) → item indices; names every unknown entry at once."""
        out, unknown = [], []
        for item in items:
            key = str(item)
            k = self._index_of.get(key) or self._title_index.get(key.lower())
            (out if k else unknown).append(k or key)
        if unknown:
            raise UnknownNameError(
                f"unknown items {unknown}: use catalogue item ids or titles (e.g. {self.titles[1]!r}), "
                "or add_items() new ones first"
            )
        return out

    def describe(self, k: int) -> dict:
        return {"item_id": self.item_ids[k], "title": self.titles[k]}

    # ---- recommendation ----
    @torch.no_grad()
    def user_vector(self, history: list[int]) -> torch.Tensor:
        if not history:
            raise InvalidInputError("an empty history cannot be scored: give at least one item")
        h = torch.tensor([history[-self.model.max_history :]], dtype=torch.long)
        return self.model.scoring_vectors(self.model.last_user_state(self.table, h))

    def recommend(
        self,
        history: list[str | int] | None = None,
        user_id: str | None = None,
        k: int = 10,
        exclude: str | list[str] | None = "history",
    ) -> list[dict]:
        """Top-``k`` items for a history (item ids or titles) or a known user.

        ``exclude="history"`` leaves out the items in the history (the evaluation protocol's default); a list
        leaves out those items; ``None`` excludes nothing.
        """
        return self.recommend_batch(
            [history] if user_id is None else None, [user_id] if user_id else None, k, exclude
        )[0]

    def recommend_batch(self, histories=None, user_ids=None, k: int = 10, exclude="history") -> list[list[dict]]:
        if (histories is None) == (user_ids is None):
            raise InvalidInputError("give either histories or user_ids")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be a whole number >= 1, got {k!r}")
        k = int(k)  # faiss takes a Python int only
        if user_ids is not None:
            missing = [u for u in user_ids if u not in self.users]
            if missing:
                raise UnknownNameError(f"unknown users {missing[:10]}: known users are those of the training data")
            resolved = [self.users[u] for u in user_ids]
        else:
            resolved = [self.resolve(h) for h in histories]
        queries = torch.cat([self.user_vector(h) for h in resolved]).float().numpy()
        if exclude == "history":
            banned = [sorted(set(h)) for h in resolved]
        elif exclude:
            banned = [self.resolve(exclude)] * len(resolved)
        else:
            banned = None
        scores, ids = self.index.search(queries, k, banned)
        return [
            [{**self.describe(int(i)), "score": float(s)} for s, i in zip(row_s, row_i) if i > 0]
            for row_s, row_i in zip(scores, ids)
        ]

    @torch.no_grad()
    def add_items(self, ids: list[str], texts: list[str], titles: list[str] | None = None) -> None:
        """Add new items by their text alone (no retraining): encoded by the item tower, added to the index."""
        if not self.model.model_config.use_text:
            raise InvalidInputError("this model has no text tower (use_text: false): new items cannot be encoded")
        clash = [i for i in ids if i in self._index_of]
        if clash:
            raise InvalidInputError(f"items already in the catalogue: {clash[:10]}")
        if len(ids) != len(texts):
            raise InvalidInputError("ids and texts must have the same length")
        tokens = tokenize_items(list(texts), self.tokenizer, self.model.model_config.max_text_length)
        pooled = self.model.text_cache.new_empty(len(ids), self.model.text_cache.shape[1])
        for rows in length_sorted_batches(tokens["attention_mask"], batch_size=256):
            pooled[rows] = self.model.encode_items(tokens, rows).to(pooled.dtype)
        # new items have no learned ID vector: the text's, plus the ID vector predicted from it under id_from_text
        vectors = self.model.scoring_vectors(self.model.text_only_vectors(pooled))
        start = len(self.item_ids)
        new = np.arange(start, start + len(ids))
        self.table = torch.cat([self.table, vectors.to(self.table.dtype)])
        self.index.add(vectors.float().numpy(), new)
        for k, (item_id, text) in enumerate(zip(ids, texts)):
            self.item_ids.append(item_id)
            self.titles.append(titles[k] if titles else item_id)
            self.texts.append(text)
            self._index_of[item_id] = start + k
            self._title_index[self.titles[-1].lower()] = start + k

    def save_index(self, folder: str | Path) -> Path:
        self.index.save(folder)
        return Path(folder) / INDEX_FILE
