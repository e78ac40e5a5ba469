"""``CTRTrainer``: the pointwise preference task's trainer on ``BaseTrainer``. Its loss is ``ctr_loss`` + ``mlm_loss``
or ``lm_loss`` (each part logged, as AdaLoRA's ``orth_loss``); it evaluates by AUC, GAUC, log loss and the
classification report, and puts the wide term on its own learning rate."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from recpipe.base import BaseTrainer
from recpipe.metrics import pointwise_metrics


class CTRTrainer(BaseTrainer):
    comparison_metrics = ("eval/auc", "eval/log_loss", "test/auc", "test/gauc", "test/log_loss")

    def __init__(self, *args, eval_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_collator = eval_collator or self.data_collator

    def learning_rates(self, model):
        """The wide term (``history_feature``, ``item_feature``) on its own learning rate (``wide_learning_rate``):
        a weight or two whose useful values (~1) AdamW reaches only after ~1/lr steps at the model's rate."""
        if self.args.wide_learning_rate is None or getattr(model, "wide", None) is None:
            return None
        wide_lr = self.args.wide_learning_rate
        return lambda name: wide_lr if name.startswith("wide.") else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(**inputs)
        args = self.args
        parts = {"ctr_loss": F.binary_cross_entropy_with_logits(out["logits"], inputs["labels"])}
        if out.get("mlm_loss") is not None and args.mlm_weight > 0:
            parts["mlm_loss"] = out["mlm_loss"]
        if out.get("lm_loss") is not None and args.lm_weight > 0:
            parts["lm_loss"] = out["lm_loss"]
        weights = {"ctr_loss": args.ctr_weight, "mlm_loss": args.mlm_weight, "lm_loss": args.lm_weight}
        loss = self.sum_loss_parts(parts, model, weights)
        return (loss, out) if return_outputs else loss

    @torch.no_grad()
    def predict_probs(self, dataset) -> np.ndarray:
        """p(like) for every example of ``dataset``, in order (each example once across processes)."""
        model = self.model
        was_training = model.training
        model.eval()
        loader = DataLoader(dataset, batch_size=self.args.per_device_eval_batch_size, collate_fn=self.eval_collator)
        loader = self.accelerator.prepare(loader)
        probs = []
        for batch in loader:
            with self.autocast_smart_context_manager():
                logits = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
            probs.append(self.accelerator.gather_for_metrics(torch.sigmoid(logits.float())).cpu())
        model.train(was_training)
        return torch.cat(probs).numpy()

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        probs = self.predict_probs(dataset)
        metrics = pointwise_metrics(
            np.asarray(dataset["label"]), probs, list(dataset["user_id"]), prefix=f"{metric_key_prefix}_"
        )
        metrics[f"{metric_key_prefix}_examples"] = float(len(dataset))
        metrics[f"{metric_key_prefix}_positive_rate"] = float(np.mean(dataset["label"]))
        return self.log_evaluation(metrics)
