"""PEFT adapters on the item encoder (LoRA, AdaLoRA, IA3) and the AdaLoRA pieces the Trainer does not do.

AdaLoRA has three traps: ``total_step`` must be set (we take it from the training schedule);
``update_and_allocate(global_step)`` must run every optimizer step (``AdaLoraCallback``); and its orthogonality
regulariser is added only to ``outputs.loss`` inside ``PeftModel.forward``, which our loss never passes through, so
``adalora_orthogonal_loss`` computes it for the combined loss.
"""

from __future__ import annotations

import logging

import torch
from peft import AdaLoraConfig, IA3Config, LoraConfig, PeftModel, get_peft_model
from transformers import TrainerCallback

from recpipe.backbone import BackboneConfig
from recpipe.errors import InvalidInputError

logger = logging.getLogger(__name__)

# The MLM head's transform and bias are new in encoders saved without a head (all-MiniLM-L6-v2): train them.
# Its decoder stays tied to the (frozen) word embeddings.
TRAINABLE_HEAD_PATTERNS = (
    "predictions.transform",
    "predictions.bias",
    "lm_head.dense",
    "lm_head.layer_norm",
    "lm_head.bias",
)


def _linear_names(model: torch.nn.Module, wanted: list[str]) -> list[str]:
    present = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    found = [w for w in wanted if w in present]
    if not found:
        raise InvalidInputError(
            f"none of lora_target_modules={wanted} is a Linear layer of the encoder; it has {sorted(present)}"
        )
    return found


def apply_peft(encoder: torch.nn.Module, config: BackboneConfig, total_steps: int | None = None) -> torch.nn.Module:
    """Wrap ``encoder`` in the adapter ``config.peft_type`` asks for, or freeze / leave it for full fine-tuning."""
    if config.freeze_encoder:
        encoder.requires_grad_(False)
        return encoder
    if config.peft_type == "none":
        return encoder
    # Adapters only inside the backbone (BERT's `bert.encoder.layer.*`, Llama's `model.layers.*`): the MLM head's
    # dense layer is trained in full instead, and a causal LM's head stays tied to its embeddings.
    targets = _linear_names(getattr(encoder, encoder.base_model_prefix), config.lora_target_modules)
    layer_regex = rf".*{encoder.base_model_prefix}\..*\.({'|'.join(targets)})$"
    if config.peft_type == "lora":
        peft_config = LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules=layer_regex
        )
    elif config.peft_type == "adalora":
        total = total_steps or 1000  # when loading a checkpoint the schedule is not used
        peft_config = AdaLoraConfig(
            init_r=config.adalora_init_r,
            target_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=layer_regex,
            total_step=total,
            tinit=max(1, total // 10),
            tfinal=max(1, total // 5),
            deltaT=max(1, total // 50),
        )
    elif config.peft_type == "ia3":
        ff = [t for t in targets if t in ("dense", "output", "fc2", "intermediate")]
        peft_config = IA3Config(
            target_modules=layer_regex, feedforward_modules=rf".*\.({'|'.join(ff)})$" if ff else []
        )
    else:
        raise InvalidInputError(f"unknown peft_type {config.peft_type!r}")
    model = get_peft_model(encoder, peft_config)
    for name, param in model.named_parameters():
        if any(p in name for p in TRAINABLE_HEAD_PATTERNS):
            param.requires_grad_(True)
    return model


def is_adalora(model: torch.nn.Module) -> bool:
    return isinstance(model, PeftModel) and model.peft_config[model.active_adapter].peft_type.value == "ADALORA"


def adalora_orthogonal_loss(model: PeftModel) -> torch.Tensor:
    """AdaLoRA's regulariser ``mean ||P P^T - I||_F`` over the A and B matrices, weighted by ``orth_reg_weight``."""
    adapter = model.active_adapter
    weight = model.peft_config[adapter].orth_reg_weight
    terms = []
    for name, p in model.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and adapter in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            terms.append(torch.norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype), p="fro"))
    return weight * torch.stack(terms).mean()


class AdaLoraCallback(TrainerCallback):
    """Runs AdaLoRA's rank allocation after every optimizer step (the Trainer never calls it)."""

    def __init__(self, peft_model: PeftModel, start_step: int = 0):
        self.peft_model, self.start_step = peft_model, start_step

    def on_optimizer_step(self, args, state, control, **kwargs):
        # before ``start_step`` the adapters get no gradient (frozen-encoder phase): there is nothing to score
        if state.global_step >= self.start_step:
            self.peft_model.base_model.update_and_allocate(state.global_step)


def adalora_rank_budget(model: PeftModel) -> int:
    """The number of singular values AdaLoRA keeps over all adapted matrices: its rank pattern once allocation has
    started, the initial rank of every matrix before."""
    config = model.peft_config[model.active_adapter]
    if config.rank_pattern:
        return int(sum(sum(bool(x) for x in mask) for mask in config.rank_pattern.values()))
    return int(sum(p.shape[0] for n, p in model.named_parameters() if "lora_E" in n))
