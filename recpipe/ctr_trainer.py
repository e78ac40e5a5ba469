"""``CTRTrainer``: the pointwise preference task's small ``Trainer`` subclass. It sums the named loss parts
(``ctr_loss`` + ``mlm_loss`` or ``lm_loss`` [+ AdaLoRA's ``orth_loss``]) and logs each, evaluates by AUC, GAUC, log
loss and the classification report, and saves recpipe CTR checkpoints (trainable weights + config)."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import Trainer

from recpipe.checkpointing import save_training_files
from recpipe.ctr_models import save_ctr_checkpoint
from recpipe.loss_logging import LossPartsLoggingMixin
from recpipe.metrics import pointwise_metrics
from recpipe.optim import create_optimizer_with_lrs
from recpipe.peft_utils import AdaLoraCallback, adalora_orthogonal_loss, is_adalora

logger = logging.getLogger(__name__)


def _backbone(model):
    return getattr(model, "encoder", None) or getattr(model, "lm", None)


class CTRTrainer(LossPartsLoggingMixin, Trainer):
    def __init__(self, *args, eval_collator=None, ctr_config: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_loss_parts()
        self.eval_collator = eval_collator or self.data_collator
        self.ctr_config = ctr_config or {}
        if is_adalora(_backbone(self.model)):
            self.add_callback(AdaLoraCallback(_backbone(self.model)))

    def create_optimizer(self, model=None):
        """The wide term (``history_feature``, ``item_feature``) on its own learning rate (``wide_learning_rate``):
        a weight or two whose useful values (~1) AdamW reaches only after ~1/lr steps at the model's rate."""
        opt_model = model or self.model
        if (
            self.optimizer is not None
            or self.args.wide_learning_rate is None
            or getattr(opt_model, "wide", None) is None
        ):
            return super().create_optimizer(model)
        wide_lr = self.args.wide_learning_rate
        self.optimizer = create_optimizer_with_lrs(
            self, opt_model, lambda name: wide_lr if name.startswith("wide.") else None
        )
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(**inputs)
        args = self.args
        parts = {"ctr_loss": args.ctr_weight * F.binary_cross_entropy_with_logits(out["logits"], inputs["labels"])}
        if out.get("mlm_loss") is not None and args.mlm_weight > 0:
            parts["mlm_loss"] = args.mlm_weight * out["mlm_loss"]
        if out.get("lm_loss") is not None and args.lm_weight > 0:
            parts["lm_loss"] = args.lm_weight * out["lm_loss"]
        backbone = _backbone(self.accelerator.unwrap_model(model))
        if is_adalora(backbone):
            parts["orth_loss"] = adalora_orthogonal_loss(backbone)
        loss = self.record_loss_parts(parts, model.training)
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
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ---- checkpoints ----
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        save_ctr_checkpoint(self.accelerator.unwrap_model(self.model), output_dir, self.ctr_config)
        save_training_files(self, output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        (model or self.accelerator.unwrap_model(self.model)).load_trainable_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        logger.info("loading the best checkpoint %s (%s)", self.state.best_model_checkpoint, self.state.best_metric)
        self.accelerator.unwrap_model(self.model).load_trainable_weights(self.state.best_model_checkpoint)
