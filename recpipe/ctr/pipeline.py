"""The pointwise preference (CTR) run: TALLRec-protocol examples → encoder or causal-LM model (+ PEFT) →
``CTRTrainer`` with the combined loss → test AUC, GAUC, log loss and the classification report."""

from __future__ import annotations

import dataclasses
import logging
import os

from accelerate import PartialState
from transformers import set_seed

from recpipe.base import mlm_collator
from recpipe.console import parameter_summary
from recpipe.ctr.collators import CrossEncoderCollator, PromptCollator
from recpipe.ctr.config import CTRDataArguments, CTRModelArguments, CTRModelConfig, CTRTrainingArguments
from recpipe.ctr.features import add_item_like_logodds
from recpipe.ctr.modeling import build_ctr_model
from recpipe.ctr.trainer import CTRTrainer
from recpipe.data import load_source
from recpipe.data.ctr import CTRConfig, build_ctr_examples
from recpipe.run_settings import claim_output_dir, run_settings
from recpipe.tracking import run_config

logger = logging.getLogger(__name__)


def ctr_data(data_args: CTRDataArguments):
    """The examples (DatasetDict train/valid/test) and their stats."""
    tables = load_source(
        data_args.dataset, data_args.data_dir, category=data_args.category, on_bad_record=data_args.on_bad_record
    )
    fields = {f.name for f in dataclasses.fields(CTRConfig)}
    config = CTRConfig(**{k: v for k, v in dataclasses.asdict(data_args).items() if k in fields})
    return build_ctr_examples(tables, config)


def fixed_subset(split, n: int | None, seed: int = 0):
    """A seeded random subset of ``n`` examples (kept in their order), or the whole split."""
    if n is None or n >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(n)).sort("timestamp")


def collators(model_args: CTRModelArguments, data_args: CTRDataArguments, args: CTRTrainingArguments, tokenizer):
    """(training collator, evaluation collator): masking or LM targets only in training."""
    if model_args.model_family == "encoder":
        train = CrossEncoderCollator(tokenizer, data_args.max_length, mlm_collator(tokenizer, args), seed=args.seed)
        return train, CrossEncoderCollator(tokenizer, data_args.max_length)
    train = PromptCollator(tokenizer, data_args.item_noun, data_args.max_length, lm_labels=args.lm_weight > 0)
    return train, PromptCollator(tokenizer, data_args.item_noun, data_args.max_length)


def print_ctr_summary(metrics: dict, output_dir: str, prefix: str = "test_") -> None:
    keys = ("auc", "gauc", "log_loss", "precision", "recall", "f1", "accuracy")
    lines = ["", f"{prefix.rstrip('_')} metrics ({int(metrics.get(prefix + 'examples', 0)):,} examples)"]
    lines += [f"  {k:<10} {metrics[prefix + k]:.4f}" for k in keys if prefix + k in metrics]
    lines += [f"checkpoint:   {output_dir}", f"metrics JSON: {os.path.join(output_dir, 'test_results.json')}"]
    print("\n".join(lines), flush=True)


def run_ctr(data_args: CTRDataArguments, model_args: CTRModelArguments, args: CTRTrainingArguments) -> dict:
    # before any data or model is loaded: a rerun with other settings stops here
    state = PartialState()
    settings = run_settings(data_args, model_args, args, num_processes=args.world_size)
    claim_output_dir(args.output_dir, settings, args.resume, state.is_main_process)
    state.wait_for_everyone()
    set_seed(args.seed)
    dd, stats = ctr_data(data_args)
    logger.info("CTR examples: %s; dropped or skipped: %s", stats["examples"], stats["skipped"])
    item_table = None
    if model_args.item_feature:
        dd, item_table = add_item_like_logodds(dd)
    model, tokenizer = build_ctr_model(CTRModelConfig.from_arguments(model_args), args.total_steps(len(dd["train"])))
    if args.process_index == 0:
        logger.info("CTR: %s", parameter_summary(model))
    train_collator, eval_collator = collators(model_args, data_args, args, tokenizer)
    extra_config = {"data_args": dataclasses.asdict(data_args), "data_stats": stats}
    if item_table is not None:  # new rows need the training counts to get their item like rate
        extra_config["item_like_table"] = item_table
    trainer = CTRTrainer(
        model=model,
        args=args,
        train_dataset=dd["train"],
        eval_dataset=fixed_subset(dd["valid"], data_args.max_eval_examples, args.seed),
        data_collator=train_collator,
        eval_collator=eval_collator,
        processing_class=tokenizer,
        extra_config=extra_config,
        run_config=run_config(
            data_args, model_args, task="ctr", **{f"data/{k}_examples": v for k, v in stats["examples"].items()}
        ),
    )
    trainer.train_and_save()
    test = fixed_subset(dd["test"], data_args.max_test_examples, args.seed)
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    trainer.save_metrics("test", metrics)
    if trainer.is_world_process_zero():
        print_ctr_summary(metrics, args.output_dir)
    return metrics
