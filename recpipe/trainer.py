"""``RecTrainer``: the retrieval task's trainer on ``BaseTrainer`` (which sums and logs the loss parts, wires AdaLoRA
and saves checkpoints). It computes the combined loss (with adversarial training), keeps the item-vector cache
fresh and saves it with checkpoints (or re-encodes it after each save, ``save_item_cache: false``), puts the encoder
on its own learning rate, and evaluates by full ranking."""

from __future__ import annotations

import os
from contextlib import nullcontext
from functools import partial

import torch

from recpipe.base import BaseTrainer
from recpipe.checkpointing import read_safetensors, write_safetensors
from recpipe.errors import InvalidInputError
from recpipe.evaluation import evaluate_split
from recpipe.fsdp import gathered_parameters
from recpipe.losses import CombinedLoss
from recpipe.robustness.adversarial import EmbeddingPerturbation, adversarial_delta, input_embeddings
from recpipe.sparse_rows import RowwiseAdamW, clip_grad_norm_

CACHE_NAME = "text_cache.safetensors"


def phase_factor(step: int, *, start: int, warmup: int, end: int) -> float:
    """Learning-rate factor of a phase that begins at ``start``: 0 before, linear warmup over ``warmup`` steps, then
    linear decay to 0 at ``end`` (``LambdaLR`` calls it with the number of steps taken)."""
    if step < start:
        return 0.0
    step -= start
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (end - start - step) / max(1, end - start - warmup))


def until_step(factor, step: int, *, end: int) -> float:
    """``factor(step)`` before ``end``, 0 from it on: a group that stops training where a phase begins."""
    return factor(step) if step < end else 0.0


class RecTrainer(BaseTrainer):
    comparison_metrics = ("eval/ndcg@10", "eval/recall@10", "test/ndcg@10", "test/recall@10", "test/mrr@10")

    def __init__(
        self,
        *args,
        item_tokens: dict | None = None,
        popularity: torch.Tensor | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.item_tokens = item_tokens
        self.popularity = popularity
        self.loss_fn = CombinedLoss(self.args, popularity)
        self._cache_step = None  # global step of the last text-cache refresh
        encoder = self.model.encoder
        # a frozen encoder's cached vectors never go stale: encode the catalogue once
        self._encoder_trains = encoder is not None and any(p.requires_grad for p in encoder.parameters())
        model_config = self.model.model_config
        if model_config.id_from_text and self.args.cold_weight == 0 and model_config.id_dropout == 0:
            raise InvalidInputError(
                "id_from_text learns from cold_loss or id_dropout: set cold_weight > 0 or id_dropout > 0"
            )
        if self.args.sparse_id_updates:
            if self.model.id_embedding is None:
                raise InvalidInputError("sparse_id_updates needs an ID embedding (use_item_ids)")
            if self.is_fsdp_enabled:
                raise InvalidInputError("sparse_id_updates does not work under FSDP (no sparse gradients there)")
            self.model.id_embedding.sparse = True  # its gradient: the rows looked up, not the whole table
        self._perturbation = None
        if self.args.adversarial != "none" and self.args.stage == "finetune":
            if not self._encoder_trains or self.args.max_fresh_items == 0:
                raise InvalidInputError(
                    "adversarial training perturbs the text of the items encoded with gradient: it needs a trained "
                    "encoder (use_text, not freeze_encoder) and max_fresh_items > 0"
                )
            self._perturbation = EmbeddingPerturbation(input_embeddings(encoder))

    def learning_rates(self, model):
        """The encoder on its own learning rate (``encoder_learning_rate``): full fine-tuning of a pretrained encoder
        wants ~2e-5 while the fresh towers and heads want ~1e-3. Its own group too when it has its own schedule."""
        if self.args.encoder_learning_rate is None and not self.encoder_groups_apart():
            return None
        encoder_lr = self.args.encoder_learning_rate
        return lambda name: encoder_lr if name.startswith("encoder.") else None

    def param_group_label(self, name: str) -> str:
        return "encoder" if name.startswith("encoder.") else ""

    def encoder_groups_apart(self) -> bool:
        """Whether the schedule treats the encoder's optimizer groups apart from the towers'."""
        return self.args.encoder_phase_schedule or not self.args.encoder_phase_towers

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The shared schedule; with ``encoder_phase_schedule`` the encoder's groups get one of their own: warmup and
        linear decay over the encoder phase, zero before it; with ``encoder_phase_towers: false`` the other groups
        stop (factor 0) where the encoder phase starts."""
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        start = self.encoder_start_step()
        if not self.encoder_groups_apart() or start == 0:
            return scheduler
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            kind = type(scheduler).__name__
            raise InvalidInputError(
                f"encoder_phase_schedule and encoder_phase_towers need a LambdaLR schedule, got {kind}"
            )
        warmup = self.args.get_warmup_steps(num_training_steps - start)
        for i, group in enumerate(scheduler.optimizer.param_groups):
            if group.get("label") == "encoder":
                if self.args.encoder_phase_schedule:
                    scheduler.lr_lambdas[i] = partial(phase_factor, start=start, warmup=warmup, end=num_training_steps)
            elif not self.args.encoder_phase_towers:
                scheduler.lr_lambdas[i] = partial(until_step, scheduler.lr_lambdas[i], end=start)
        return scheduler

    def get_optimizer_cls_and_kwargs(self, args, model=None):
        optimizer_cls, kwargs = super().get_optimizer_cls_and_kwargs(args, model)
        if args.sparse_id_updates:  # AdamW that also takes the ID embedding's sparse gradient, row by row
            optimizer_cls = RowwiseAdamW
        return optimizer_cls, kwargs

    def _clip_grad_norm(self, model):
        # the text-to-ID map that only cold_loss trains is clipped on its own: its gradient must not shrink the warm
        # model's through a shared global norm (with it, the warm model trains exactly as without the map)
        apart = self._clipped_apart(model)
        grads = [p.grad for p in apart]
        for p in apart:
            p.grad = None
        try:
            if not self.args.sparse_id_updates:
                return super()._clip_grad_norm(model)
            self.accelerator.unscale_gradients()
            return clip_grad_norm_(model.parameters(), self.args.max_grad_norm)  # torch's refuses sparse gradients
        finally:
            for p, g in zip(apart, grads):
                p.grad = g
            if apart:
                torch.nn.utils.clip_grad_norm_(apart, self.args.max_grad_norm)

    def _clipped_apart(self, model) -> list[torch.nn.Parameter]:
        """The parameters with a gradient of their own loss only: ``id_from_text`` when ``cold_loss`` alone trains it
        (no ``id_dropout``, whose rec loss would reach it too). Not under fp16's gradient scaler, which unscales an
        optimizer's gradients once per step: there the map shares the global norm."""
        unwrapped = self.accelerator.unwrap_model(model)
        cold_map = getattr(unwrapped, "id_from_text", None)
        if cold_map is None or unwrapped.model_config.id_dropout > 0 or self.accelerator.scaler is not None:
            return []
        return [p for p in cold_map.parameters() if p.grad is not None]

    def _get_grad_norm(self, model, grad_norm=None):
        if grad_norm is None and self.args.sparse_id_updates:
            grad_norm = clip_grad_norm_(model.parameters(), float("inf"))
        return super()._get_grad_norm(model, grad_norm)

    def _refresh_cache_if_due(self, model) -> None:
        needs_cache = model.model_config.use_text and self.args.stage == "finetune"
        if not needs_cache or self.item_tokens is None:
            return
        step = self.state.global_step
        # the encoder changes only once its phase has begun: refreshes before that would re-encode the same vectors
        encoder_changed = self._encoder_trains and step > self.encoder_start_step()
        due = self._cache_step is None or (
            encoder_changed and step - self._cache_step >= self.args.item_cache_refresh_steps
        )
        if due:
            with gathered_parameters(model):  # outside the model's forward: FSDP's shards gathered
                model.refresh_text_cache(self.item_tokens, self.args.encode_batch_size, accelerator=self.accelerator)
            self._cache_step = step

    def encoder_start_step(self) -> int:
        """The first ``frozen_encoder_steps`` of fine-tuning train the towers and ID embeddings on the cached text
        vectors (cheap steps) before the adapters join. Pretraining trains only the encoder: it starts at once."""
        return self.args.frozen_encoder_steps if self.args.stage == "finetune" else 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        if model.training and not self.encoder_phase():
            # no item text re-encoded with gradient: no MLM/relation parts, the cached vectors stand for every item
            inputs = {k: v for k, v in inputs.items() if not k.startswith("fresh_")}
        self._refresh_cache_if_due(unwrapped)
        self.loss_fn.to(inputs[next(iter(inputs))].device)
        attack = self._perturbation is not None and model.training and "fresh_items" in inputs
        # a softmax over the whole catalogue needs every item's vector; sampled or in-batch negatives only theirs
        inputs = {**inputs, "all_items": self.args.negatives == "full"}
        with self._perturbation.probe() if attack else nullcontext():
            outputs = model(**inputs)
        parts = self.loss_fn(unwrapped, outputs, inputs)
        # adv_loss is the rec loss under attack: it carries the rec loss's weight times adv_weight
        weights = {**self.loss_fn.weights, "adv_loss": self.args.adv_weight * self.args.rec_weight}
        if attack and self._perturbation.delta is not None and "rec_loss" in parts:
            parts["adv_loss"] = self._adversarial_rec_loss(unwrapped, inputs, parts["rec_loss"])
        loss = self.sum_loss_parts(parts, model, weights)
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
        with gathered_parameters(model):
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
        return self.log_evaluation(metrics)

    # ---- checkpoints: the text cache is part of the training state ----
    def save_extra_state(self, output_dir: str) -> None:
        # a resumed run must score with the same stale vectors as the uninterrupted one
        model = self.accelerator.unwrap_model(self.model)
        if model.model_config.use_text and self._cache_step is not None and self.args.save_item_cache:
            write_safetensors(
                os.path.join(output_dir, CACHE_NAME),
                {"text_cache": model.text_cache.contiguous()},
                metadata={"step": str(self._cache_step)},
            )

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)  # on every process
        if (
            not self.args.save_item_cache
            and self._encoder_trains
            and self.state.global_step > self.encoder_start_step()
        ):
            # No cache in the checkpoint: a run resumed from it re-encodes the catalogue from these weights at its
            # first step. This run does the same at its next step, so both go on with the same vectors.
            self._cache_step = None

    def load_extra_state(self, checkpoint_dir: str, model) -> None:
        cache = os.path.join(checkpoint_dir, CACHE_NAME)
        if model.model_config.use_text and os.path.isfile(cache):
            tensors, metadata = read_safetensors(cache)
            model.text_cache.copy_(tensors["text_cache"])
            self._cache_step = int(metadata["step"])

    def _load_best_model(self) -> None:
        super()._load_best_model()
        self._cache_step = None
