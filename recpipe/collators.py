"""Batches for the two stages: user sequences (fine-tuning) and item pairs (self-supervised pretraining).

Both pick the batch's "fresh" items — deduplicated, at most ``max_fresh_items`` — whose text is re-encoded with
gradient in this step, trimmed to their longest text (dynamic padding) and masked for MLM by
``DataCollatorForLanguageModeling`` (a masked copy beside the unmasked text, or in place). Every other item vector
comes from the model's cache.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import datasets
import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from recpipe.errors import InvalidInputError


def tokenize_items(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize item texts once into padded tensors (row i = item index i + 1); batches trim them later."""
    ds = datasets.Dataset.from_dict({"text": texts})
    want_offsets = getattr(tokenizer, "is_fast", False)

    def encode(batch):
        enc = tokenizer(
            batch["text"],
            max_length=max_length,
            truncation=True,
            padding="max_length",
            return_special_tokens_mask=True,
            return_offsets_mapping=want_offsets,
        )
        return dict(enc)

    ds = ds.map(encode, batched=True, remove_columns=["text"], desc="tokenizing item text")
    out = dict(ds.with_format("torch")[:])
    out["special_tokens_mask"] = out["special_tokens_mask"].bool() | (out["attention_mask"] == 0)
    return out


def make_windows(train: datasets.Dataset, max_history: int, stride: int | None = None) -> datasets.Dataset:
    """Cut each training sequence, from its end, into windows of ``max_history + 1`` items (inputs ``w[:-1]``,
    targets ``w[1:]``) that start every ``stride`` items, so that every item after the first is a target exactly
    once, in the window where it sees the most history.

    A window trains only its last ``stride`` targets (``first_target`` marks the first), except the window at the
    start of the sequence, which trains all of its own. ``stride = max_history`` (the default) gives non-overlapping
    windows: cheap, but a window's first targets see only a few items. ``stride = 1`` makes every target one example
    with its full last-``max_history`` history, as at test time (one example per prefix, as SASRec in RecBole).
    """
    span = max_history + 1
    stride = stride or max_history
    if not 1 <= stride <= max_history:
        raise InvalidInputError(f"window stride must lie in [1, max_history={max_history}], got {stride}")

    def cut(batch):
        windows, firsts = [], []
        for seq in batch["item_ids"]:
            end = len(seq)
            while end >= 2:
                start = max(0, end - span)
                windows.append(seq[start:end])
                firsts.append(0 if start == 0 else end - start - 1 - stride)
                if start == 0:
                    break
                end -= stride
        return {"items": windows, "first_target": firsts}

    return train.map(cut, batched=True, remove_columns=train.column_names, desc="windowing sequences")


def make_item_pairs(train: datasets.Dataset, extra_items: int = 0, num_items: int = 0) -> datasets.Dataset:
    """Item–item relation pairs: consecutive distinct items in training sequences (deduplicated).

    Items of the pretraining corpus outside the catalogue (indices ``num_items + 1 ...``) come as single rows
    (``b = 0``), for MLM only."""
    pairs = set()
    for seq in train["item_ids"]:
        pairs.update((a, b) for a, b in zip(seq[:-1], seq[1:]) if a != b)
    a, b = zip(*sorted(pairs)) if pairs else ((), ())
    extra = list(range(num_items + 1, num_items + 1 + extra_items))
    return datasets.Dataset.from_dict({"a": list(a) + extra, "b": list(b) + [0] * len(extra)})


@dataclass
class FreshItemEncoder:
    """Select, trim and mask the text of fresh items."""

    tokenized: dict[str, torch.Tensor] | None
    mlm_collator: DataCollatorForLanguageModeling | None
    max_fresh_items: int
    seed: int = 0
    # the masked text goes to ``fresh_mlm_input_ids`` and the item vectors come from the unmasked ``fresh_input_ids``
    mlm_on_copy: bool = False

    def __call__(self, items: torch.Tensor, batch: dict) -> torch.Tensor:
        """Pick fresh items among ``items`` (unique, > 0) and add their inputs to ``batch``; returns them.

        The random choices (which items, which tokens masked) come from a generator seeded by the batch's content,
        not from the global RNG: the dataloader collates a batch ahead of the step, so with the global RNG a run
        resumed from a checkpoint would mask differently from the uninterrupted run."""
        if self.tokenized is None or self.max_fresh_items <= 0:
            return items[:0]
        content = torch.cat([items.flatten(), *(t.flatten() for t in batch.values() if torch.is_tensor(t))])
        batch_seed = zlib.crc32(content.numpy().tobytes(), self.seed)
        if len(items) > self.max_fresh_items:
            generator = torch.Generator().manual_seed(batch_seed)
            items = items[torch.randperm(len(items), generator=generator)[: self.max_fresh_items]]
        rows = items - 1
        mask = self.tokenized["attention_mask"][rows]
        width = int(mask.sum(1).max())
        ids = self.tokenized["input_ids"][rows, :width].clone()
        batch["fresh_items"] = items
        batch["fresh_attention_mask"] = mask[:, :width]
        batch["fresh_input_ids"] = ids
        if self.mlm_collator is not None:
            offsets = self.tokenized.get("offset_mapping")
            special = self.tokenized["special_tokens_mask"][rows, :width]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(batch_seed)
                masked, labels = self.mlm_collator.torch_mask_tokens(
                    ids.clone(),
                    special_tokens_mask=special,
                    offset_mapping=None if offsets is None else offsets[rows, :width],
                )
            batch["fresh_mlm_input_ids" if self.mlm_on_copy else "fresh_input_ids"] = masked
            batch["fresh_labels"] = labels
        return items


def _rel_pairs(fresh: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows (i, j) of fresh positions such that (fresh[i], fresh[j]) is one of the pairs (a, b)."""
    if fresh.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    pos = torch.full((int(max(fresh.max(), a.max(), b.max())) + 1,), -1, dtype=torch.long)
    pos[fresh] = torch.arange(len(fresh))
    i, j = pos[a], pos[b]
    keep = (i >= 0) & (j >= 0) & (a != b)
    pairs = torch.stack([i[keep], j[keep]], 1)
    return torch.unique(pairs, dim=0) if len(pairs) else pairs


@dataclass
class SequenceCollator:
    """Fine-tuning batches: right-padded ``input_items``/``target_items`` + fresh item text + relation pairs."""

    fresh: FreshItemEncoder

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(r["items"]) for r in rows) - 1
        inputs = torch.zeros(len(rows), length, dtype=torch.long)
        targets = torch.zeros(len(rows), length, dtype=torch.long)
        for k, r in enumerate(rows):
            seq = torch.as_tensor(r["items"], dtype=torch.long)
            inputs[k, : len(seq) - 1] = seq[:-1]
            targets[k, : len(seq) - 1] = seq[1:]
            targets[k, : r.get("first_target", 0)] = 0  # trained in another window, with more history
        batch = {"input_items": inputs, "target_items": targets}
        present = torch.unique(torch.cat([inputs.flatten(), targets.flatten()]))
        fresh = self.fresh(present[present > 0], batch)
        valid = (inputs > 0) & (targets > 0)
        batch["rel_pairs"] = _rel_pairs(fresh, inputs[valid], targets[valid])
        return batch


@dataclass
class PairCollator:
    """Pretraining batches: the texts of both items of each pair (masked for MLM) and the pairs themselves."""

    fresh: FreshItemEncoder

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        a = torch.tensor([r["a"] for r in rows], dtype=torch.long)
        b = torch.tensor([r["b"] for r in rows], dtype=torch.long)
        present = torch.unique(torch.cat([a, b]))
        batch: dict[str, torch.Tensor] = {}
        fresh = self.fresh(present[present > 0], batch)
        has_pair = b > 0
        batch["rel_pairs"] = _rel_pairs(fresh, a[has_pair], b[has_pair])
        return batch


@dataclass
class EvalCollator:
    """Evaluation batches: right-padded histories, targets, and the row index (to look up known items)."""

    max_history: int

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        histories = [r["history"][-self.max_history :] for r in rows]
        history = torch.zeros(len(rows), max(1, max(map(len, histories))), dtype=torch.long)
        for k, h in enumerate(histories):
            history[k, : len(h)] = torch.as_tensor(h, dtype=torch.long)
        return {
            "input_items": history,
            "targets": torch.tensor([r["target"] for r in rows], dtype=torch.long),
            "row": torch.tensor([r["row"] for r in rows], dtype=torch.long),
        }
