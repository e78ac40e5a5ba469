"""AdamW (or the optimizer ``TrainingArguments`` names) with some parameters on their own learning rate.

Both trainers need it: full fine-tuning wants ~2e-5 on the pretrained encoder beside ~1e-3 on the fresh heads, and
the CTR like-rate term is one weight whose useful value (~1) is far from where AdamW's ~lr-per-step moves take it in
a 40-step few-shot run."""

from __future__ import annotations

from collections.abc import Callable

from transformers import Trainer


def create_optimizer_with_lrs(trainer: Trainer, model, lr_of: Callable[[str], float | None]):
    """Group the trainable parameters by (learning rate, weight decay or not) and build the trainer's optimizer.

    ``lr_of(name)`` gives a parameter's learning rate, or None for ``args.learning_rate``. Decay follows the
    Trainer's own rule (no decay on biases and norms); the learning-rate schedule scales every group alike."""
    args = trainer.args
    decay = set(trainer.get_decay_parameter_names(model))
    groups: dict[tuple[float, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            lr = lr_of(name)
            groups.setdefault((args.learning_rate if lr is None else lr, name in decay), []).append(param)
    optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
    param_groups = [
        {"params": params, "lr": lr, "weight_decay": args.weight_decay if with_decay else 0.0}
        for (lr, with_decay), params in groups.items()
    ]
    return optimizer_cls(param_groups, **kwargs)
