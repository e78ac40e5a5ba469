"""AdamW (or the optimizer ``TrainingArguments`` names) with some parameters on their own learning rate.

Both trainers need it: full fine-tuning wants ~2e-5 on the pretrained encoder beside ~1e-3 on the fresh heads, and
the CTR like-rate term is one weight whose useful value (~1) is far from where AdamW's ~lr-per-step moves take it in
a 40-step few-shot run."""

from __future__ import annotations

from collections.abc import Callable

from transformers import Trainer

# what wrappers put into parameter names: FSDP1 (``use_orig_params``), activation checkpointing, torch.compile, DDP
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrapped_name(name: str) -> str:
    """A parameter's name as the bare model has it, so that name rules hold on a wrapped model too."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name.removeprefix("module.")


def create_optimizer_with_lrs(trainer: Trainer, model, lr_of: Callable[[str], float | None]):
    """Group the trainable parameters by (learning rate, weight decay or not) and build the trainer's optimizer.

    ``lr_of(name)`` gives a parameter's learning rate, or None for ``args.learning_rate``; it sees the bare model's
    names even when the Trainer built the optimizer on a wrapped model (FSDP does). Decay follows the Trainer's own
    rule (no decay on biases and norms); the learning-rate schedule scales every group alike."""
    args = trainer.args
    decay = set(trainer.get_decay_parameter_names(model))
    groups: dict[tuple[float, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            if "_flat_param" in name:
                raise ValueError(
                    "per-module learning rates need FSDP's use_orig_params=True (flattened parameters have no names)"
                )
            lr = lr_of(unwrapped_name(name))
            groups.setdefault((args.learning_rate if lr is None else lr, name in decay), []).append(param)
    optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
    param_groups = [
        {"params": params, "lr": lr, "weight_decay": args.weight_decay if with_decay else 0.0}
        for (lr, with_decay), params in groups.items()
    ]
    return optimizer_cls(param_groups, **kwargs)
