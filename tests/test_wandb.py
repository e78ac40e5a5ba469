"""An offline W&B run holds the logged loss parts and metrics (read back from its run file)."""

import glob
import json
from pathlib import Path

from helpers import model_args, training_args
from wandb_records import history_rows, records

from recpipe.configs import DataArguments
from recpipe.pipeline import run


def test_offline_wandb_run_holds_loss_parts_and_metrics(tiny_model_dir, tmp_path, prepared_dir, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest disables W&B; here recpipe must choose offline itself
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_PROJECT", "recpipe-test")
    monkeypatch.setenv("WANDB_RUN_GROUP", "movielens-100k-retrieval")
    monkeypatch.setenv("WANDB_TAGS", "movielens-100k,lora")
    (tmp_path / "wb").mkdir()
    args = training_args(
        tmp_path,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=3,
        report_to=["wandb"],
        stages=["finetune", "evaluate", "export", "robustness"],
        robustness_perturbations=["word_dropout", "drop_history"],
        robustness_severities=[0.5],
    )
    metrics = run(DataArguments(max_history=10, prepared_dir=prepared_dir), model_args(tiny_model_dir), args)
    (run_file,) = glob.glob(str(tmp_path / "wb" / "wandb" / "offline-run-*" / "run-*.wandb"))
    rows = history_rows(run_file)
    logged = {key for row in rows for key in row}
    assert {"train/rec_loss", "train/mlm_loss", "train/rel_loss", "train/loss", "train/learning_rate"} <= logged
    assert {"eval/ndcg@10", "eval/recall@10", "test/ndcg@10"} <= logged
    test_row = next(row for row in rows if "test/ndcg@10" in row)
    assert test_row["test/ndcg@10"] == metrics["test_ndcg@10"]
    table = next(row for row in rows if "example_recommendations/_type" in row)
    assert table["example_recommendations/_type"] == "table-file" and table["example_recommendations/ncols"] == 5
    kinds = {r.WhichOneof("record_type") for r in records(run_file)}
    assert "config" in kinds
    # the whole run configuration, so that runs group and filter by any setting: data, model, PEFT, training
    config = {}
    for r in records(run_file):
        if r.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in r.config.update})
    assert (
        config["peft_type"] == "lora" and config["lora_r"] == 8 and config["lora_target_modules"] == ["query", "value"]
    )
    assert config["model_name_or_path"] == tiny_model_dir and config["dataset"] == "movielens-100k"
    assert config["data/users"] == 60 and config["data/items"] == 40 and config["task"] == "retrieval"
    assert config["mlm_weight"] == 0.5 and config["max_steps"] == 6 and config["run_name"] == "out"
    (run_record,) = [r.run for r in records(run_file) if r.WhichOneof("record_type") == "run"]
    assert run_record.run_group == "movielens-100k-retrieval" and list(run_record.tags) == ["movielens-100k", "lora"]
    assert run_record.display_name == "out" and run_record.project == "recpipe-test"
    # the stages after fine-tuning, in the same launch and the same W&B run
    robustness = next(row for row in rows if "robustness/table/_type" in row)
    assert robustness["robustness/table/_type"] == "table-file" and robustness["robustness/table/nrows"] == 4
    assert "robustness/mean_drop_ndcg@10" in robustness
    out = tmp_path / "out"
    report = json.loads((out / "robustness.json").read_text())
    assert [r["perturbation"] for r in report["rows"]] == ["word_dropout"] * 2 + ["drop_history"] * 2
    evaluated = json.loads((out / "eval_test_results.json").read_text())
    assert evaluated["test_ndcg@10"] == metrics["test_ndcg@10"]
    assert (out / "embeddings" / "item_embeddings.parquet").is_file()


def test_tensorboard_events_hold_loss_parts_metrics_and_the_run_config(tiny_model_dir, tmp_path, prepared_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    args = training_args(tmp_path, max_steps=4, eval_strategy="steps", eval_steps=2, report_to=["tensorboard"])
    args.run_name = "lora-r8"
    run(DataArguments(max_history=10, prepared_dir=prepared_dir), model_args(tiny_model_dir), args)
    events = glob.glob(str(tmp_path / "out" / "runs" / "lora-r8" / "events.out.tfevents.*"))  # named by run_name
    assert events
    acc = EventAccumulator(str(Path(events[0]).parent))  # the folder: the run may span several event files
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/rec_loss", "train/mlm_loss", "train/rel_loss", "train/loss", "eval/ndcg@10"} <= tags
    rec = [e.value for e in acc.Scalars("train/rec_loss")]
    assert len(rec) == 4 and all(v > 0 for v in rec)
    # the hparams table: the run config beside the training arguments, and the metrics to compare runs by
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {
        k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
        for k, v in start.session_start_info.hparams.items()
    }
    assert hparams["peft_type"] == "lora" and hparams["lora_r"] == 8 and hparams["dataset"] == "movielens-100k"
    assert hparams["model_name_or_path"] == tiny_model_dir and hparams["mlm_weight"] == 0.5
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"eval/ndcg@10", "test/ndcg@10"}
