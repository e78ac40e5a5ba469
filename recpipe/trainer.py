"""``RecTrainer``: a small ``transformers.Trainer`` subclass. It sums the combined loss's named parts and logs each,
keeps the item-vector cache fresh, evaluates by full ranking, and saves/loads recpipe checkpoints."""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import Trainer

from recpipe.adversarial import EmbeddingPerturbation, adversarial_delta, input_embeddings
from recpipe.checkpointing import save_training_files
from recpipe.evaluation import evaluate_split
from recpipe.loss_logging import LossPartsLoggingMixin
from recpipe.losses import CombinedLoss
from recpipe.optim import create_optimizer_with_lrs
from recpipe.peft_utils import AdaLoraCallback, adalora_orthogonal_loss, is_adalora

logger = logging.getLogger(__name__)
CACHE_NAME = "text_cache.safetensors"


class RecTrainer(LossPartsLoggingMixin, Trainer):
    def __init__(
        self,
        *args,
        item_tokens: dict | None = None,
        popularity: torch.Tensor | None = None,
        recpipe_config: dict | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.item_tokens = item_tokens
        self.popularity = popularity
        self.recpipe_config = recpipe_config or {}
        self.loss_fn = CombinedLoss(self.args, popularity)
        self._init_loss_parts()
        self._cache_step = None  # global step of the last text-cache refresh
        encoder = self.model.encoder
        # a frozen encoder's cached vectors never go stale: encode the catalogue once
        self._encoder_trains = encoder is not None and any(p.requires_grad for p in encoder.parameters())
        if encoder is not None and is_adalora(encoder):
            self.add_callback(AdaLoraCallback(encoder, start_step=self.args.frozen_encoder_steps))
        self._perturbation = None
        if self.args.adversarial != "none" and self.args.stage == "finetune":
            if not self._encoder_trains or self.args.max_fresh_items == 0:
                raise ValueError(
                    "adversarial training perturbs the text of the items encoded with gradient: it needs a trained "
                    "encoder (use_text, not freeze_encoder) and max_fresh_items > 0"
                )
            self._perturbation = EmbeddingPerturbation(input_embeddings(encoder))

    def create_optimizer(self, model=None):
        """AdamW with the encoder on its own learning rate (``encoder_learning_rate``): full fine-tuning of a
        pretrained encoder wants ~2e-5 while the fresh towers and heads want ~1e-3."""
        if self.optimizer is not None or self.args.encoder_learning_rate is None:
            return super().create_optimizer(model)
        encoder_lr = self.args.encoder_learning_rate
        self.optimizer = create_optimizer_with_lrs(
            self, model or self.model, lambda name: encoder_lr if name.startswith("encoder.") else None
        )
        return self.optimizer

    def _refresh_cache_if_due(self, model) -> None:
        needs_cache = model.args.use_text and self.args.stage == "finetune"
        if not needs_cache or self.item_tokens is None:
            return
        step = self.state.global_step
        # the encoder changes only once its phase has begun: refreshes before that would re-encode the same vectors
        encoder_changed = self._encoder_trains and step > self.args.frozen_encoder_steps
        due = self._cache_step is None or (
            encoder_changed and step - self._cache_step >= self.args.item_cache_refresh_steps
        )
        if due:
            model.refresh_text_cache(self.item_tokens, self.args.encode_batch_size, accelerator=self.accelerator)
            self._cache_step = step

    def _encoder_phase(self) -> bool:
        """Whether this step trains the encoder: not during the first ``frozen_encoder_steps`` (cheap steps on the
        cached text vectors, which train the towers and ID embeddings before the adapters join)."""
        return self.state.global_step >= self.args.frozen_encoder_steps

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        if model.training and not self._encoder_phase():
            # no item text re-encoded with gradient: no MLM/relation parts, the cached vectors stand for every item
            inputs = {k: v for k, v in inputs.items() if not k.startswith("fresh_")}
        self._refresh_cache_if_due(unwrapped)
        self.loss_fn.to(inputs[next(iter(inputs))].device)
        attack = self._perturbation is not None and model.training and "fresh_items" in inputs
        with self._perturbation.probe() if attack else nullcontext():
            outputs = model(**inputs)
        parts = self.loss_fn(unwrapped, outputs, inputs)
        if attack and self._perturbation.delta is not None and "rec_loss" in parts:
            parts["adv_loss"] = self.args.adv_weight * self._adversarial_rec_loss(unwrapped, inputs, parts["rec_loss"])
        if unwrapped.encoder is not None and is_adalora(unwrapped.encoder) and self._encoder_phase():
            parts["orth_loss"] = adalora_orthogonal_loss(unwrapped.encoder)
        loss = self.record_loss_parts(parts, model.training)
        return (loss, outputs) if return_outputs else loss

    def _adversarial_rec_loss(self, model, inputs, rec_loss: torch.Tensor) -> torch.Tensor:
        """The rec loss with the fresh items' word embeddings pushed to the worst point of their ε-balls. The extra
        forwards go through the unwrapped model: DDP allows one forward per backward, and its gradient hooks still
        see every parameter once because the single backward sums both graphs."""
        perturbation = self._perturbation

        def rec_loss_at(delta):
            with perturbation.apply(delta):
                return self.loss_fn(model, model(**inputs), inputs)["rec_loss"]

        delta = adversarial_delta(
            rec_loss_at,
            rec_loss,
            perturbation.delta,
            perturbation.token_norms,
            self.args.adversarial,
            self.args.adv_epsilon,
            self.args.adv_alpha,
            self.args.adv_steps,
        )
        return rec_loss_at(delta)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Full-ranking metrics on the valid split (``eval_ndcg@10``, ...) instead of the default loss loop."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        model = self.accelerator.unwrap_model(self.model)
        metrics = evaluate_split(
            model,
            dataset,
            self.item_tokens,
            ks=self.args.eval_ks,
            exclude_history=self.args.exclude_history,
            batch_size=self.args.per_device_eval_batch_size,
            prefix=f"{metric_key_prefix}_",
            accelerator=self.accelerator,
        )
        self._cache_step = self.state.global_step  # the evaluation just refreshed the cache
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ---- checkpoints ----
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(output_dir, extra_config=self.recpipe_config)
        if model.args.use_text and self._cache_step is not None:
            # the cache is part of the training state: a resumed run must score with the same stale vectors
            save_file(
                {"text_cache": model.text_cache.contiguous()},
                os.path.join(output_dir, CACHE_NAME),
                metadata={"step": str(self._cache_step)},
            )
        save_training_files(self, output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = model or self.accelerator.unwrap_model(self.model)
        model.load_trainable_weights(resume_from_checkpoint)
        cache = os.path.join(resume_from_checkpoint, CACHE_NAME)
        if model.args.use_text and os.path.isfile(cache):
            with safe_open(cache, "pt") as f:
                model.text_cache.copy_(f.get_tensor("text_cache"))
                self._cache_step = int(f.metadata()["step"])

    def _load_best_model(self) -> None:
        logger.info("loading the best checkpoint %s (%s)", self.state.best_model_checkpoint, self.state.best_metric)
        self.accelerator.unwrap_model(self.model).load_trainable_weights(self.state.best_model_checkpoint)
        self._cache_step = None
