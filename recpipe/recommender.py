"""Inference: ``Recommender.from_pretrained(folder or hub id)`` → ``recommend(history=..., k=10)``,
``recommend(user_id=...)``, ``add_items(ids, texts)`` for cold-start items known by their text alone.

A checkpoint written by recpipe carries its catalogue, known users, item vectors and FAISS index
(``recpipe.inference_files``): loading reads them and rebuilds only the user tower (torch alone), so the first answer
comes without the text encoder's libraries and without re-encoding the catalogue. The encoder is loaded on first
need (``add_items``, ``.model``). A checkpoint without those files (older ones, intermediate ``checkpoint-N``
folders) is served from its prepared dataset, encoding the catalogue once.

Scores are those evaluation ranks by: the saved vectors are ``recpipe.evaluation.item_vectors``, and a history's
vector is the user tower's last state over them, as in ``RecModel.last_user_state``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

from recpipe.errors import InvalidInputError, MissingInputError, UnknownNameError
from recpipe.hub import resolve_checkpoint
from recpipe.index import INDEX_FILE, ItemIndex
from recpipe.inference_files import has_inference_files, known_users, read_inference_files
from recpipe.user_tower import UserTower

logger = logging.getLogger(__name__)

CONFIG_NAME = "recpipe_config.json"  # recpipe.modeling.CONFIG_NAME, without importing the encoder's libraries
WEIGHTS_NAME = "recpipe_weights.safetensors"
EXPLAIN_TOP = 3  # history items named per recommended item


def load_user_tower(checkpoint_dir: Path, model_config: dict) -> UserTower:
    """The checkpoint's user tower, in eval mode, from its config and the ``user_tower.*`` weights alone."""
    c = model_config
    sizes = (c["hidden_size"], c["max_history"], c["user_layers"], c["user_heads"])
    tower = UserTower(*sizes, c["user_dropout"], c.get("user_ffn_size"))
    with safe_open(str(checkpoint_dir / WEIGHTS_NAME), "pt") as f:
        state = {k.removeprefix("user_tower."): f.get_tensor(k) for k in f.keys() if k.startswith("user_tower.")}
    tower.load_state_dict(state, strict=True)
    return tower.eval()


def resolve_prepared_dir(config: dict, checkpoint_dir: Path, prepared_dir: str | None = None) -> str:
    """The prepared dataset of a checkpoint: the one given, else the recorded path as given at training time
    (relative to where training ran) or its absolute form."""
    if prepared_dir:
        return prepared_dir
    data_args = config.get("data_args", {})
    for candidate in (data_args.get("prepared_dir"), config.get("prepared_dir_absolute")):
        if candidate and (Path(candidate) / "stats.json").is_file():
            return candidate
    dataset = data_args.get("dataset", "movielens-100k")
    raise MissingInputError(
        f"{checkpoint_dir} has no saved catalogue (recpipe export CHECKPOINT writes one) and its prepared dataset "
        f"{data_args.get('prepared_dir')!r} is not here; pass --prepared_dir DIR, the folder that "
        f"`recpipe data prepare --dataset {dataset} --output_dir DIR` writes"
    )


class Recommender:
    def __init__(
        self,
        checkpoint_dir: Path,
        config: dict,
        tower: UserTower,
        items: dict[str, list],
        users: dict[str, tuple[list[int], list[int]]],
        table: torch.Tensor,
        index: ItemIndex,
        model=None,
        tokenizer=None,
    ):
        self.checkpoint_dir, self.config = checkpoint_dir, config
        self.model_config = config["model_config"]
        self.tower = tower
        self.max_history = self.model_config["max_history"]
        self.item_ids: list[str] = ["<pad>", *items["item_id"]]
        self.titles: list[str] = ["", *items["title"]]
        self.texts: list[str] = ["", *items["text"]]
        self._index_of = {item_id: k for k, item_id in enumerate(self.item_ids) if k}
        self._title_index = {t.lower(): k for k, t in enumerate(self.titles) if k and t}
        self.users = users  # user_id -> (history item indices, every known item index)
        self.table = table.float()  # row k = item index k
        self.index = index
        self._model, self._tokenizer, self._tokens = model, tokenizer, None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        index_kind: str | None = None,
        prepared_dir: str | None = None,
        revision: str | None = None,
    ) -> Recommender:
        """Load a recpipe checkpoint from a local folder or a Hugging Face Hub id (``owner/name``).

        Args:
            name_or_path: the checkpoint folder (``output_dir`` of a training run) or a hub repository id.
            index_kind: ``flat``, ``hnsw`` or ``ivf`` to rebuild the index in another kind (default: the saved one).
            prepared_dir: serve the catalogue of this prepared dataset instead of the saved one (re-encodes it).
            revision: a hub revision (branch, tag or commit).
        """
        folder = resolve_checkpoint(name_or_path, revision)
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise MissingInputError(f"{name_or_path} is not a recpipe retrieval checkpoint (no {CONFIG_NAME})")
        config = json.loads(path.read_text())
        if "model_config" not in config:
            raise MissingInputError(f"{name_or_path} is a checkpoint of an older recpipe: retrain or re-export it")
        tower = load_user_tower(folder, config["model_config"])
        if prepared_dir is None and has_inference_files(folder):
            items, users, table, index = read_inference_files(folder)
            if index_kind and index_kind != index.kind:
                index = _build_index(table, index_kind)
            return cls(folder, config, tower, items, users, table, index)
        prepared = resolve_prepared_dir(config, folder, prepared_dir)
        return cls._from_prepared(folder, config, tower, prepared, index_kind)

    @classmethod
    def _from_prepared(cls, folder: Path, config: dict, tower: UserTower, prepared_dir: str, index_kind: str | None):
        from recpipe.collators import tokenize_items
        from recpipe.data import load_prepared
        from recpipe.evaluation import item_vectors
        from recpipe.modeling import load_checkpoint

        logger.warning("%s has no saved item vectors: encoding the catalogue of %s", folder, prepared_dir)
        model, tokenizer, _ = load_checkpoint(folder)
        dd, _ = load_prepared(prepared_dir)
        items = {k: list(dd["items"][k]) for k in ("item_id", "title", "text")}
        tokens = tokenize_items(items["text"], tokenizer, model.model_config.max_text_length) if tokenizer else None
        table = item_vectors(model, tokens)
        rec = cls(folder, config, tower, items, known_users(dd["test"], model.max_history), table, None, model)
        rec._tokenizer, rec._tokens = tokenizer, tokens
        rec.index = _build_index(rec.table, index_kind or "flat")
        return rec

    # ---- the full model, loaded on first need ----
    @property
    def model(self):
        """The whole ``RecModel`` (text encoder included), loaded on first access."""
        if self._model is None:
            from recpipe.modeling import load_checkpoint

            logger.info("loading the item encoder of %s", self.checkpoint_dir)
            self._model, self._tokenizer, _ = load_checkpoint(self.checkpoint_dir)
        return self._model

    @property
    def tokens(self) -> dict | None:
        """The catalogue's tokenized text (for re-encoding it with ``recpipe.evaluation.item_vectors``)."""
        if self._tokens is None and self.model_config["use_text"]:
            from recpipe.collators import tokenize_items

            model = self.model
            self._tokens = tokenize_items(self.texts[1:], self._tokenizer, model.model_config.max_text_length)
        return self._tokens

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
    def user_vectors(self, histories: list[list[int]]) -> torch.Tensor:
        """Scoring vectors of histories (item indices, oldest first): the user tower's state after each history's
        last item, normalised under cosine similarity."""
        if any(not h for h in histories):
            raise InvalidInputError("an empty history cannot be scored: give at least one item")
        cut = [h[-self.max_history :] for h in histories]
        batch = torch.zeros(len(cut), max(map(len, cut)), dtype=torch.long)
        for row, h in enumerate(cut):
            batch[row, : len(h)] = torch.as_tensor(h)
        mask = batch > 0
        states = self.tower(self.table[batch], mask)
        last = states[torch.arange(len(cut)), mask.sum(1) - 1]
        return F.normalize(last, dim=-1) if self.model_config["similarity"] == "cos" else last

    def user_vector(self, history: list[int]) -> torch.Tensor:
        return self.user_vectors([history])

    def recommend(
        self,
        history: list[str | int] | None = None,
        user_id: str | None = None,
        k: int = 10,
        exclude: str | list[str] | None = "history",
        explain: bool = False,
    ) -> list[dict]:
        """Top-``k`` items for a history (item ids or titles, oldest first) or a known user.

        ``exclude="history"`` leaves out the items the user had (the evaluation protocol's default); a list leaves
        out those items; ``None`` excludes nothing. ``explain=True`` adds to each item ``because``: the history items
        whose removal lowers its score most (leave-one-out contributions).
        """
        if (history is None) == (user_id is None):
            raise InvalidInputError("give a history or a user_id (one of the two)")
        histories = None if user_id is not None else [history]
        return self.recommend_batch(histories, [user_id] if user_id is not None else None, k, exclude, explain)[0]

    def recommend_batch(
        self, histories=None, user_ids=None, k: int = 10, exclude="history", explain: bool = False
    ) -> list[list[dict]]:
        if (histories is None) == (user_ids is None):
            raise InvalidInputError("give either histories or user_ids")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be a whole number >= 1, got {k!r}")
        k = int(k)  # faiss takes a Python int only
        if user_ids is not None:
            missing = [u for u in user_ids if u not in self.users]
            if missing:
                raise UnknownNameError(f"unknown users {missing[:10]}: known users are those of the training data")
            resolved = [list(self.users[u][0]) for u in user_ids]
            known = [list(self.users[u][1]) for u in user_ids]
        else:
            resolved = [self.resolve(h) for h in histories]
            known = resolved
        queries = self.user_vectors(resolved).numpy()
        if exclude == "history":
            banned = [sorted(set(h)) for h in known]
        elif exclude:
            banned = [self.resolve(exclude)] * len(resolved)
        else:
            banned = None
        scores, ids = self.index.search(queries, k, banned)
        results = [
            [{**self.describe(int(i)), "score": float(s)} for s, i in zip(row_s, row_i) if i > 0]
            for row_s, row_i in zip(scores, ids)
        ]
        if explain:
            for history, row_ids, row in zip(resolved, ids, results):
                self._explain(history, [int(i) for i in row_ids if i > 0], row)
        return results

    @torch.no_grad()
    def _explain(self, history: list[int], recommended: list[int], results: list[dict]) -> None:
        """Leave-one-out: each history item's contribution to a recommended item's score is how much the score
        falls when that item is taken out of the history (the user tower reads the last ``max_history`` items)."""
        history = history[-self.max_history :]
        items = self.table[recommended]
        full = self.user_vectors([history]) @ items.T  # [1, R]
        if len(history) == 1:
            for result in results:
                result["because"] = [{**self.describe(history[0]), "contribution": None}]
            return
        without = [history[:j] + history[j + 1 :] for j in range(len(history))]
        drop = (full - self.user_vectors(without) @ items.T).T  # [R, H]
        for r, result in enumerate(results):
            order = torch.argsort(drop[r], descending=True)[:EXPLAIN_TOP].tolist()
            result["because"] = [
                {**self.describe(history[j]), "contribution": float(drop[r, j])} for j in order if drop[r, j] > 0
            ]

    @torch.no_grad()
    def add_items(self, ids: list[str], texts: list[str], titles: list[str] | None = None) -> None:
        """Add new items by their text alone (no retraining): encoded by the item tower, added to the index."""
        if not self.model_config["use_text"]:
            raise InvalidInputError("this model has no text tower (use_text: false): new items cannot be encoded")
        if len(ids) != len(texts) or (titles is not None and len(titles) != len(ids)):
            raise InvalidInputError("ids, texts (and titles) must have the same length")
        clash = [i for i in ids if i in self._index_of]
        if clash or len(set(ids)) != len(ids):
            raise InvalidInputError(f"items already in the catalogue or repeated: {(clash or list(ids))[:10]}")
        from recpipe.collators import tokenize_items
        from recpipe.modeling import length_sorted_batches

        model = self.model
        tokens = tokenize_items(list(texts), self._tokenizer, model.model_config.max_text_length)
        pooled = model.text_cache.new_empty(len(ids), model.text_cache.shape[1])
        for rows in length_sorted_batches(tokens["attention_mask"], batch_size=256):
            pooled[rows] = model.encode_items(tokens, rows).to(pooled.dtype)
        # new items have no learned ID vector: the text's, plus the ID vector predicted from it under id_from_text
        vectors = model.scoring_vectors(model.text_only_vectors(pooled)).float()
        start = len(self.item_ids)
        self.table = torch.cat([self.table, vectors])
        self.index.add(vectors.numpy(), np.arange(start, start + len(ids)))
        for k, (item_id, text) in enumerate(zip(ids, texts)):
            self.item_ids.append(item_id)
            self.titles.append(titles[k] if titles else item_id)
            self.texts.append(text)
            self._index_of[item_id] = start + k
            self._title_index[self.titles[-1].lower()] = start + k
        self._tokens = None

    def save_index(self, folder: str | Path) -> Path:
        self.index.save(folder)
        return Path(folder) / INDEX_FILE


def _build_index(table: torch.Tensor, kind: str) -> ItemIndex:
    index = ItemIndex(table.shape[1], kind=kind)
    index.add(table[1:].float().numpy(), np.arange(1, len(table)))
    return index
