"""Pointwise preference ("will this user like this item?") models on pretrained language models.

- ``CrossEncoderCTR``: ``[CLS] history text [SEP] candidate text`` through an encoder loaded as
  ``AutoModelForMaskedLM`` → pooled state → a linear head giving the log-odds of "like". The MLM loss comes from
  the same forward pass (the MLM head runs only on the masked positions).
- ``CausalLMCTR``: a prompt ending in ``Answer:`` through an ``AutoModelForCausalLM``; the next-token logits of the
  verbalizer tokens (" Yes", " No") give ``p(like) = softmax(logit_yes, logit_no)[0]``, i.e. the log-odds is
  ``logit_yes - logit_no``. The self-supervised part is the language-modelling loss on the item-title tokens of the
  same prompt (the template's words are masked out of it).

With ``history_feature`` / ``item_feature`` both add ``w · like-rate log-odds + b`` (``WideTerm``, starting at zero;
the history's and/or the candidate's like rate, :mod:`recpipe.ctr.features`) to their log-odds: the wide part of a
wide & deep model.

Both return ``{"logits": log-odds [B], "mlm_loss" | "lm_loss": scalar or None}``, save what training changed as
safetensors beside ``ctr_config.json``, and are rebuilt by ``load_ctr_checkpoint``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from recpipe.backbone import (
    check_loading_info,
    load_masked_lm,
    masked_lm_loss,
    mlm_parts,
    pool,
    resolve_model_path,
    set_dropout,
)
from recpipe.checkpointing import TrainableWeightsMixin, config_from_checkpoint
from recpipe.console import quiet_model_loading
from recpipe.ctr.config import CTRModelConfig
from recpipe.errors import InvalidInputError
from recpipe.peft_utils import apply_peft

CTR_CONFIG_NAME = "ctr_config.json"


class WideTerm(nn.Module):
    """``w · features + b`` added to the log-odds, zero at initialisation (the model starts as without it)."""

    def __init__(self, features: list[str]):
        super().__init__()
        self.features = features
        self.linear = nn.Linear(len(features), 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        missing = [name for name in self.features if batch.get(name) is None]
        if missing:
            raise InvalidInputError(
                f"the wide term needs {missing} in the batch (recpipe's collators and pipeline add them)"
            )
        x = torch.stack([batch[name].to(logits.dtype) for name in self.features], 1)
        return logits + self.linear(x).squeeze(-1)


class CrossEncoderCTR(TrainableWeightsMixin, nn.Module):
    config_file = CTR_CONFIG_NAME

    def __init__(self, config: CTRModelConfig, encoder: nn.Module):
        super().__init__()
        self.model_config = config  # not `config`, which transformers' Trainer reads as a PretrainedConfig
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(hidden, 1)
        self.wide = WideTerm(config.wide_features) if config.wide_features else None

    @property
    def backbone(self) -> nn.Module:
        return self.encoder

    def forward(self, input_ids, attention_mask, token_type_ids=None, mlm_labels=None, **features) -> dict:
        backbone, mlm_head = mlm_parts(self.encoder)
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        pooled = pool(hidden, attention_mask, self.model_config.pooling)
        logits = self.head(self.dropout(pooled)).squeeze(-1).float()
        if self.wide is not None:
            logits = self.wide(logits, features)
        mlm_loss = None if mlm_labels is None else masked_lm_loss(self.encoder, mlm_head, hidden, mlm_labels)
        return {"logits": logits, "mlm_loss": mlm_loss}


def verbalizer_ids(tokenizer, yes: str, no: str) -> tuple[int, int]:
    """The single token ids of the two answers; an answer that is not one token is an error (its first piece
    alone would not be the answer's probability)."""
    ids = []
    for word in (yes, no):
        pieces = tokenizer.encode(word, add_special_tokens=False)
        if len(pieces) != 1:
            raise InvalidInputError(
                f"verbalizer {word!r} is {len(pieces)} tokens {pieces} for this tokenizer; pick one token"
            )
        ids.append(pieces[0])
    if ids[0] == ids[1]:
        raise InvalidInputError(f"the verbalizers {yes!r} and {no!r} map to the same token")
    return ids[0], ids[1]


class CausalLMCTR(TrainableWeightsMixin, nn.Module):
    config_file = CTR_CONFIG_NAME

    def __init__(self, config: CTRModelConfig, lm: nn.Module, yes_id: int, no_id: int):
        super().__init__()
        self.model_config = config  # not `config`, which transformers' Trainer reads as a PretrainedConfig
        self.lm = lm
        self.yes_id, self.no_id = yes_id, no_id
        self.wide = WideTerm(config.wide_features) if config.wide_features else None

    @property
    def backbone(self) -> nn.Module:
        return self.lm

    def _parts(self):
        inner = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        return getattr(inner, inner.base_model_prefix), inner.get_output_embeddings()

    def answer_logits(self, hidden: torch.Tensor, attention_mask: torch.Tensor, lm_head) -> torch.Tensor:
        """Logits of (yes, no) as the next token after the last prompt token (right padding) → ``[B, 2]``."""
        last = attention_mask.sum(1) - 1
        states = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        weight = lm_head.weight[[self.yes_id, self.no_id]]
        bias = lm_head.bias[[self.yes_id, self.no_id]] if lm_head.bias is not None else None
        return F.linear(states, weight, bias).float()

    def forward(self, input_ids, attention_mask, lm_labels=None, **features) -> dict:
        backbone, lm_head = self._parts()
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pair = self.answer_logits(hidden, attention_mask, lm_head)
        lm_loss = None
        if lm_labels is not None:
            # next-token prediction on the item-title tokens only (labels are -100 elsewhere): the state at t
            # predicts the token at t + 1, the head runs on the selected positions only
            lm_loss = masked_lm_loss(self.lm, lm_head, hidden[:, :-1], lm_labels[:, 1:])
        logits = pair[:, 0] - pair[:, 1]
        if self.wide is not None:
            logits = self.wide(logits, features)
        return {"logits": logits, "lm_loss": lm_loss}


def build_ctr_model(config: CTRModelConfig, total_steps: int | None = None):
    """(model, tokenizer) for ``config.model_family``, PEFT applied as ``config.peft_type`` asks."""
    if config.model_family == "encoder":
        encoder, tokenizer = load_masked_lm(config)
        with quiet_model_loading():
            return CrossEncoderCTR(config, apply_peft(encoder, config, total_steps)), tokenizer
    path = resolve_model_path(config.model_name_or_path)
    with quiet_model_loading():
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        lm, info = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=config.trust_remote_code, dtype=torch.float32, output_loading_info=True
        )
    check_loading_info(config.model_name_or_path, info)
    if config.encoder_dropout is not None:
        set_dropout(lm, config.encoder_dropout)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    yes_id, no_id = verbalizer_ids(tokenizer, config.yes_token, config.no_token)
    with quiet_model_loading():
        return CausalLMCTR(config, apply_peft(lm, config, total_steps), yes_id, no_id), tokenizer


def load_ctr_checkpoint(checkpoint_dir: str | os.PathLike):
    """(model in eval mode, tokenizer, the checkpoint's config JSON) from a CTR checkpoint."""
    config, saved = config_from_checkpoint(checkpoint_dir, CTR_CONFIG_NAME, "recpipe CTR", CTRModelConfig)
    model, tokenizer = build_ctr_model(config)
    model.load_trainable_weights(checkpoint_dir)
    return model.eval(), tokenizer, saved
