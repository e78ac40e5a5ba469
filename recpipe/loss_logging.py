"""A ``Trainer`` mixin that logs each named part of a combined loss, averaged over the steps since the last log (train)
or over the evaluation (eval), as TRL and sentence-transformers do — plus the perplexity of a language-model part."""

from __future__ import annotations

import math
from collections import defaultdict

import torch

# parts whose unweighted value is a token cross-entropy, and the argument holding their weight
LM_PARTS = {"mlm_loss": "mlm_weight", "lm_loss": "lm_weight"}


class LossPartsLoggingMixin:
    def _init_loss_parts(self) -> None:
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def record_loss_parts(self, parts: dict[str, torch.Tensor], training: bool) -> torch.Tensor:
        """Remember every part for the next log; returns their sum (the loss to minimise)."""
        mode = "train" if training else "eval"
        for name, value in parts.items():
            self._metrics[mode][name].append(value.detach().float().item())
        return sum(parts.values())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._metrics[mode].items():
            logs[f"{prefix}{name}"] = sum(values) / len(values)
        for part, weight_name in LM_PARTS.items():
            value, weight = logs.get(f"{prefix}{part}"), getattr(self.args, weight_name, 0.0)
            if value is not None and weight > 0:
                logs[f"{prefix}perplexity"] = math.exp(min(value / weight, 50.0))
        self._metrics[mode].clear()
        super().log(logs, start_time)
