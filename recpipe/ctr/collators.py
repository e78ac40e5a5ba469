"""Batches for the pointwise preference task: the encoder's text pair and the causal LM's prompt.

Neither ever sees the label: the texts are rendered from the history and the candidate only, and the label travels
in its own ``labels`` tensor. Histories are cut from the oldest item when an example is too long.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from recpipe.ctr.features import wide_features
from recpipe.errors import InvalidInputError

INSTRUCTION = (
    "Given the user's preference and unpreference, identify whether the user will like the target {noun} "
    'by answering "Yes" or "No".'
)


def history_pair_text(titles: list[str], liked: list[bool]) -> str:
    """The encoder's first segment, most recent first (truncation then drops the oldest)."""
    recent = list(zip(titles, liked))[::-1]
    likes = "; ".join(t for t, ok in recent if ok) or "none"
    dislikes = "; ".join(t for t, ok in recent if not ok) or "none"
    return f"Liked: {likes}. Disliked: {dislikes}."


def _batch_seed(seed: int, tensor: torch.Tensor) -> int:
    """A seed from the batch's content: masking then does not depend on the global RNG, which the dataloader's
    prefetching and a resumed run would shift."""
    return zlib.crc32(tensor.numpy().tobytes(), seed)


@dataclass
class CrossEncoderCollator:
    tokenizer: PreTrainedTokenizerBase
    max_length: int = 256
    mlm_collator: DataCollatorForLanguageModeling | None = None  # set for training batches only
    seed: int = 0

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        first = [history_pair_text(r["history_titles"], r["history_liked"]) for r in rows]
        second = [r["candidate_text"] for r in rows]
        enc = self.tokenizer(
            first,
            second,
            truncation="only_first",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
            return_special_tokens_mask=self.mlm_collator is not None,
        )
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if self.mlm_collator is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_batch_seed(self.seed, enc["input_ids"]))
                batch["input_ids"], batch["mlm_labels"] = self.mlm_collator.torch_mask_tokens(
                    enc["input_ids"].clone(), special_tokens_mask=enc["special_tokens_mask"]
                )
        batch.update(wide_features(rows))
        batch["labels"] = torch.tensor([float(r["label"]) for r in rows])
        return batch


def render_prompt(row: dict, noun: str, keep: int | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The TALLRec-style prompt ending in ``Answer:`` and the character spans of the item titles in it.
    ``keep`` = how many of the most recent history items to show (all by default)."""
    titles, liked = list(row["history_titles"]), list(row["history_liked"])
    if keep is not None:
        titles, liked = titles[len(titles) - keep :], liked[len(liked) - keep :]
    text = INSTRUCTION.format(noun=noun) + "\n"
    spans: list[tuple[int, int]] = []

    def add_titles(label: str, chosen: list[str]) -> None:
        nonlocal text
        text += label
        for k, title in enumerate(chosen):
            text += (", " if k else "") + '"'
            spans.append((len(text), len(text) + len(title)))
            text += title + '"'
        text += "\n"

    add_titles("User Preference: ", [t for t, ok in zip(titles, liked) if ok])
    add_titles("User Unpreference: ", [t for t, ok in zip(titles, liked) if not ok])
    text += f'Whether the user will like the target {noun} "'
    spans.append((len(text), len(text) + len(row["candidate_title"])))
    text += row["candidate_title"] + '"?\n'
    if row.get("candidate_text"):
        text += f"About it: {row['candidate_text']}\n"
    return text + "Answer:", spans


@dataclass
class PromptCollator:
    """Right-padded prompts (the answer is read at each row's last token) and, when ``lm_labels`` is wanted, the
    next-token targets on the item-title tokens only."""

    tokenizer: PreTrainedTokenizerBase
    noun: str = "item"
    max_length: int = 384
    lm_labels: bool = False

    def _encode(self, row: dict) -> tuple[list[int], list[int]]:
        keep = len(row["history_titles"])
        while True:
            text, spans = render_prompt(row, self.noun, keep)
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=self.lm_labels)
            ids = enc["input_ids"]
            if len(ids) <= self.max_length or keep == 0:
                break
            keep -= 1  # drop the oldest history item and try again
        if len(ids) > self.max_length:
            raise InvalidInputError(
                f"a prompt without any history is {len(ids)} tokens > max_length {self.max_length}"
            )
        labels = [-100] * len(ids)
        if self.lm_labels:
            for k, (start, end) in enumerate(enc["offset_mapping"]):
                if any(start >= a and end <= b and end > start for a, b in spans):
                    labels[k] = ids[k]
        return ids, labels

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if self.lm_labels and not getattr(self.tokenizer, "is_fast", False):
            raise InvalidInputError("lm_weight > 0 needs a fast tokenizer (character offsets of the item titles)")
        encoded = [self._encode(r) for r in rows]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros(len(rows), width, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for k, (ids, lab) in enumerate(encoded):
            input_ids[k, : len(ids)] = torch.tensor(ids)
            attention[k, : len(ids)] = 1
            labels[k, : len(lab)] = torch.tensor(lab)
        batch = {"input_ids": input_ids, "attention_mask": attention}
        if self.lm_labels:
            batch["lm_labels"] = labels
        batch.update(wide_features(rows))
        batch["labels"] = torch.tensor([float(r["label"]) for r in rows])
        return batch
