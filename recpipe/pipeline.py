"""The one code path behind ``make train``, ``accelerate launch recipes/<x>.py`` and ``recpipe train``:
prepare data → (pretrain) → fine-tune → evaluate on test → save checkpoint, metrics and model card.

A *stage* is one entry of ``stages``: the training stages ``pretrain`` and ``finetune`` run here
(``train_stage``); the checkpoint stages ``evaluate``, ``export`` and ``robustness`` work on the checkpoint in
``output_dir`` (:mod:`recpipe.checkpoint_stages`).
"""

from __future__ import annotations

import dataclasses
import logging
import os

from accelerate import PartialState
from transformers import EarlyStoppingCallback, set_seed

from recpipe import checkpoint_stages
from recpipe.base import mlm_collator
from recpipe.collators import (
    FreshItemEncoder,
    PairCollator,
    SequenceCollator,
    make_item_pairs,
    make_windows,
    tokenize_items,
)
from recpipe.configs import DataArguments, ModelArguments, RecModelConfig, RecTrainingArguments
from recpipe.console import parameter_summary
from recpipe.data import current_stats, load_prepared, load_source, prepare, prepare_lock, source_key
from recpipe.data.prepare import PrepareConfig
from recpipe.data.summary import stats_lines
from recpipe.errors import InvalidInputError
from recpipe.evaluation import evaluate_split, item_popularity, item_vectors
from recpipe.fsdp import gathered_parameters
from recpipe.inference_files import known_users, write_inference_files
from recpipe.model_card import write_model_card
from recpipe.modeling import build_model
from recpipe.report import write_report
from recpipe.robustness import RobustnessConfig, mean_drop
from recpipe.run_settings import claim_output_dir, run_settings
from recpipe.tracking import configure_wandb, finish_wandb, log_example_recommendations, run_config
from recpipe.trainer import RecTrainer

logger = logging.getLogger(__name__)

TRAINING_STAGES = ("pretrain", "finetune")


def prepared_data(data_args: DataArguments, training_args: RecTrainingArguments):
    """Load the prepared dataset, preparing it first (on the main process) unless it is current
    (``recpipe.data.current_stats``: the same configuration and the same source)."""
    cfg = PrepareConfig(**{f.name: getattr(data_args, f.name) for f in dataclasses.fields(PrepareConfig)})
    generic = data_args.generic_files()
    source = source_key(data_args.dataset, data_args.data_dir, data_args.category, **generic)
    with training_args.main_process_first(desc="preparing data"):
        if training_args.process_index == 0:
            with prepare_lock(data_args.prepared_dir):  # another launch preparing the same folder goes first
                if current_stats(data_args.prepared_dir, cfg, source) is None:
                    if data_args.dataset == "generic" and "interactions_path" not in generic:
                        raise InvalidInputError(
                            f"{data_args.prepared_dir} holds no data prepared with this recipe's settings; for "
                            "dataset: generic give interactions (and items) so that it can be prepared, or prepare "
                            "it with `recpipe data prepare --dataset generic ...` and the same settings"
                        )
                    tables = load_source(
                        data_args.dataset, data_args.data_dir, data_args.category, cfg.on_bad_record, **generic
                    )
                    prepare(tables, cfg, data_args.prepared_dir, source=source)
    dd, stats = load_prepared(data_args.prepared_dir)
    if training_args.process_index == 0:
        logger.info("data (%s):\n%s", data_args.prepared_dir, "\n".join(stats_lines(stats)))
    return dd, stats


def train_stage(stage, data_args, model_args, training_args, dd, stats, init_from: str | None = None):
    """Run one training stage (``pretrain`` or ``finetune``); returns ``(trainer, test_metrics or None)``."""
    args = dataclasses.replace(training_args, stage=stage)
    set_seed(args.seed)
    num_items = len(dd["items"])
    if stage == "pretrain":
        catalogue = set(dd["items"]["item_id"])
        extra = [t for i, t in zip(dd["pretrain"]["item_id"], dd["pretrain"]["text"]) if i not in catalogue]
        train_ds = make_item_pairs(dd["train"], extra_items=len(extra), num_items=num_items)
        texts = list(dd["items"]["text"]) + extra
    else:
        train_ds = make_windows(dd["train"], data_args.max_history, args.window_stride)
        texts = list(dd["items"]["text"])
    config = RecModelConfig.from_arguments(model_args, num_items=num_items, max_history=data_args.max_history)
    model, tokenizer = build_model(config, args.total_steps(len(train_ds)))
    if init_from:
        model.load_trainable_weights(init_from)
        logger.info("initialised from %s", init_from)
    popularity = item_popularity(dd["train"], num_items)
    model.restrict_ids_to(popularity > 0)  # items never trained on (cold start) keep no ID vector
    if args.process_index == 0:
        logger.info("%s: %s", stage, parameter_summary(model))

    item_tokens = tokenize_items(texts, tokenizer, config.max_text_length) if tokenizer is not None else None
    use_fresh = config.use_text and not config.freeze_encoder
    fresh = FreshItemEncoder(
        item_tokens if use_fresh else None,
        mlm_collator(tokenizer, args, args.whole_word_masking),
        args.max_fresh_items,
        seed=args.seed,
        mlm_on_copy=args.mlm_on_copy,
    )
    collator = PairCollator(fresh) if stage == "pretrain" else SequenceCollator(fresh)
    use_wandb = configure_wandb(args.report_to)
    callbacks = []
    if args.early_stopping_patience and stage == "finetune":
        callbacks.append(EarlyStoppingCallback(args.early_stopping_patience))
    extra_config = {
        "data_args": dataclasses.asdict(data_args),
        "prepared_dir_absolute": os.path.abspath(data_args.prepared_dir),
        "stage": stage,
        "data_stats": stats,
        "num_processes": args.world_size,
    }
    trainer = RecTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dd["valid"] if stage == "finetune" else None,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=callbacks,
        item_tokens=item_tokens,
        popularity=popularity,
        extra_config=extra_config,
        run_config=run_config(data_args, model_args, stats, task="retrieval", stage=stage),
    )
    trainer.train_and_save()
    if stage == "pretrain":
        return trainer, None
    test_metrics, table = {}, None
    # under FSDP the whole weights, on every process, for the evaluation and the exported item vectors
    with gathered_parameters(model):
        # test_cold (cold-start protocol) holds targets that never occurred in training; it reuses the fresh cache
        for split in ("test", "test_cold"):
            if split in dd:
                test_metrics.update(
                    evaluate_split(
                        model,
                        dd[split],
                        item_tokens,
                        ks=args.eval_ks,
                        exclude_history=args.exclude_history,
                        batch_size=args.per_device_eval_batch_size,
                        prefix=f"{split}_",
                        accelerator=trainer.accelerator,
                        refresh=split == "test",
                        item_popularity=trainer.popularity,
                    )
                )
        if trainer.is_world_process_zero():
            # the test evaluation left the cache fresh: these are the vectors it ranked with
            table = item_vectors(model, item_tokens, refresh=False)
            if use_wandb:  # runs the user tower
                log_example_recommendations(model, dd["test"], dd["items"], table)
    test_metrics["test_exclude_history"] = float(args.exclude_history)
    trainer.log(dict(test_metrics))
    if trainer.is_world_process_zero():
        items = {k: list(dd["items"][k]) for k in ("item_id", "title", "text")}
        write_inference_files(args.output_dir, items, known_users(dd["test"], model.max_history), table)
    trainer.log_metrics("test", test_metrics)
    trainer.save_metrics("test", test_metrics)
    return trainer, test_metrics


def print_summary(metrics: dict, output_dir: str, card, plots) -> None:
    """The end of a run: the test metrics table and where everything is."""
    keys = ("ndcg", "recall", "mrr")
    ks = sorted({int(k.split("@")[1]) for k in metrics if k.startswith("test_ndcg@")})
    lines = [
        "",
        "test metrics (full ranking over the whole catalogue, ties pessimistic)",
        "  K   " + "".join(f"{k:>10}" for k in keys),
    ]
    for k in ks:
        lines.append(f"  {k:<4}" + "".join(f"{metrics.get(f'test_{m}@{k}', float('nan')):>10.4f}" for m in keys))
    lines += [
        f"checkpoint:   {output_dir}",
        f"metrics JSON: {os.path.join(output_dir, 'test_results.json')}",
        f"model card:   {card}",
        f"plots:        {', '.join(str(p) for p in plots)}",
    ]
    print("\n".join(lines), flush=True)


def checkpoint_stage(stage: str, args: RecTrainingArguments) -> None:
    """evaluate / export / robustness on the checkpoint in ``output_dir`` (main process; the others wait)."""
    state = PartialState()
    if state.is_main_process:
        checkpoint = args.output_dir
        if stage == "evaluate":
            metrics, path = checkpoint_stages.evaluate_checkpoint(checkpoint, "test")
            print(f"evaluate: test_ndcg@10 {metrics['test_ndcg@10']:.4f} (all metrics in {path})", flush=True)
        elif stage == "export":
            checkpoint_stages.export_embeddings(checkpoint)
        elif stage == "robustness":
            config = RobustnessConfig(
                perturbations=list(args.robustness_perturbations),
                severities=list(args.robustness_severities),
                seed=args.seed,
            )
            if "wandb" in (args.report_to or []):
                import wandb

                if wandb.run is None:
                    wandb.init(job_type="robustness", name=args.run_name, config={"checkpoint": checkpoint})
            rows, paths = checkpoint_stages.robustness_of_checkpoint(checkpoint, config)
            print(f"robustness: mean ndcg@10 drop {mean_drop(rows):.1f}% ({paths[1]}, {paths[2]})", flush=True)
        else:
            raise InvalidInputError(f"unknown stage {stage!r}")
    state.wait_for_everyone()


def run(data_args: DataArguments, model_args: ModelArguments, training_args: RecTrainingArguments, stages=None):
    """Run the stages (default: ``training_args.stages``). Pretraining writes to ``<output_dir>/pretrain`` and the
    fine-tuning stage starts from its weights."""
    stages = list(stages or training_args.stages)
    if "robustness" in stages:  # check its options now, not after hours of training
        RobustnessConfig(list(training_args.robustness_perturbations), list(training_args.robustness_severities))
    training = [stage for stage in stages if stage in TRAINING_STAGES]
    if training:  # before any data or model is loaded: a rerun with other settings stops here
        settings = run_settings(
            data_args, model_args, training_args, stages=training, num_processes=training_args.world_size
        )
        state = PartialState()
        claim_output_dir(training_args.output_dir, settings, training_args.resume, state.is_main_process)
        state.wait_for_everyone()
    dd, stats = prepared_data(data_args, training_args)
    init_from, metrics = model_args.init_from, None
    for stage in stages:
        if stage == "pretrain":
            out = os.path.join(training_args.output_dir, "pretrain")
            pre_args = dataclasses.replace(
                training_args,
                output_dir=out,
                max_steps=training_args.pretrain_max_steps,
                learning_rate=training_args.pretrain_learning_rate or training_args.learning_rate,
                eval_strategy="no",
                load_best_model_at_end=False,
                metric_for_best_model=None,
            )
            train_stage("pretrain", data_args, model_args, pre_args, dd, stats, init_from)
            init_from = out
        elif stage == "finetune":
            trainer, metrics = train_stage("finetune", data_args, model_args, training_args, dd, stats, init_from)
            if trainer.is_world_process_zero():
                card = write_model_card(training_args.output_dir, data_args, model_args, training_args, stats, metrics)
                plots = write_report(training_args.output_dir)
                print_summary(metrics, training_args.output_dir, card, plots)
        else:
            checkpoint_stage(stage, training_args)
    if "wandb" in (training_args.report_to or []):
        finish_wandb()
    return metrics
