"""Two processes on the CPU (`accelerate launch --multi_gpu --num_processes 2` without CUDA): training, evaluation
of every user exactly once, the catalogue encoding split across the processes, test metrics equal to a 1-process
evaluation of the same checkpoint, and a resume with another number of processes refused."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import recipe

ROOT = Path(__file__).resolve().parent.parent


def assert_one_process_evaluation_matches(out: Path, metrics: dict, env: dict) -> None:
    """``recpipe evaluate`` of the run's checkpoint in one process gives the test metrics the run reported."""
    cmd = [sys.executable, "-m", "recpipe.cli", "evaluate", "--checkpoint", str(out), "--split", "test"]
    single = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    one_process = json.loads((out / "eval_test_results.json").read_text())
    assert set(one_process) <= set(metrics)
    for key, value in one_process.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.slow
def test_two_process_launch_matches_one_process_evaluation(tiny_model_dir, prepared_dir, tmp_path):
    out = tmp_path / "ddp"
    config_path = recipe(tmp_path, tiny_model_dir, prepared_dir, out)
    config = yaml.safe_load(config_path.read_text())
    # 60 test users in batches of 16 over 2 processes: the last batch is padded and must not count twice
    config.update(max_steps=20, save_steps=10, eval_strategy="steps", eval_steps=10, per_device_eval_batch_size=16)
    config.update(encode_batch_size=8, resume=False, adversarial="fgm", adv_epsilon=0.2)  # FGM under DDP too
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # `accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.x unless mpirun is configured
    # (huggingface/accelerate#2741); `--multi_gpu` goes through torchrun, and without CUDA each process runs on the
    # CPU with the gloo backend (the recipe sets use_cpu).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += [str(ROOT / "recipes" / "movielens.py"), "--config", str(config_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 20
    assert any("eval_ndcg@10" in entry for entry in state["log_history"])
    assert all(entry["adv_loss"] > 0 for entry in state["log_history"] if "rec_loss" in entry)
    assert json.loads((out / "recpipe_config.json").read_text())["num_processes"] == 2
    assert_one_process_evaluation_matches(out, json.loads((out / "test_results.json").read_text()), env)

    # resuming the 2-process run with 1 process would change the global batch: a clear error before any work
    resumed = subprocess.run(
        [sys.executable, "-m", "recpipe.cli", "train", "--config", str(config_path), "--resume", "true"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert "holds a run with other settings: num_processes 2 → 1." in resumed.stderr.splitlines()[-1]


@pytest.mark.slow
def test_fsdp_two_process_run_matches_one_process_evaluation_and_resumes_exactly(
    tiny_model_dir, prepared_dir, tmp_path
):
    """recpipe's FSDP config (FSDP2, BertLayer wrapping, full state dict) on 2 CPU processes. accelerate picks FSDP
    only on GPU-like devices (on the CPU it would silently run DDP), so tests/fsdp_on_cpu.py lets it shard on the CPU:
    the catalogue encoding, evaluation and checkpoints then see sharded weights, as on GPUs."""
    out = tmp_path / "fsdp"
    config_path = recipe(
        tmp_path, tiny_model_dir, prepared_dir, out, max_steps=20, save_steps=10, encode_batch_size=8, resume=True
    )
    config = yaml.safe_load(config_path.read_text())
    config.update(eval_strategy="steps", eval_steps=10, per_device_eval_batch_size=16)  # evaluation while sharded
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    fsdp = str(ROOT / "recpipe" / "accelerate_configs" / "fsdp.yaml")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", fsdp, "--num_processes", "2"]
    cmd += ["--mixed_precision", "no", str(ROOT / "tests" / "fsdp_on_cpu.py")]
    cmd += [str(ROOT / "recipes" / "movielens.py"), "--config", str(config_path)]

    def launch():
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        sharded_modules = [int(n) for n in re.findall(r"fsdp_on_cpu: (\d+) modules sharded", proc.stderr)]
        assert len(sharded_modules) == 2 and min(sharded_modules) >= 3  # each process: the root + 2 BertLayers
        return json.loads((out / "test_results.json").read_text())

    sharded = launch()
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 20 and any("eval_ndcg@10" in entry for entry in state["log_history"])
    assert_one_process_evaluation_matches(out, sharded, env)  # the saved weights are whole, not one shard

    # resumed from checkpoint-10 (weights loaded into the shards, FSDP optimizer state): the same end
    shutil.rmtree(out / "checkpoint-20")
    assert launch() == sharded


def test_fsdp_wraps_the_encoder_layers_but_not_the_tied_embeddings(tiny_model_dir):
    """accelerate's TRANSFORMER_BASED_WRAP reads the model's ``_no_split_modules``: BERT's own list less
    ``BertEmbeddings``, whose word embeddings the MLM decoder shares; outside FSDP gathering changes nothing."""
    from helpers import model_args, rec_model

    from recpipe.fsdp import gathered_parameters

    model, _ = rec_model(model_args(tiny_model_dir))
    assert model._no_split_modules == ["BertLayer"]
    before = {name: param.clone() for name, param in model.named_parameters()}
    with gathered_parameters(model) as gathered:
        assert gathered is model
    assert all(torch.equal(param, before[name]) for name, param in model.named_parameters())


def test_catalogue_encoding_is_split_across_processes(tiny_model_dir):
    """Each process encodes only its own batches; together they cover the catalogue once, bit-equal to one process."""
    import copy

    from conftest import NUM_ITEMS, item_text
    from helpers import model_args, rec_model

    from recpipe.collators import tokenize_items

    model, tokenizer = rec_model(model_args(tiny_model_dir, peft_type="none"))
    model.model_config.inference_dtype = "float32"
    tokens = tokenize_items([item_text(i) for i in range(NUM_ITEMS)], tokenizer, 32)
    model.refresh_text_cache(tokens, batch_size=3)
    expected = model.text_cache.clone()

    def share_of(rank):
        captured = {}

        class OneOfTwoProcesses:  # what the all-gather receives from process `rank`
            num_processes, process_index = 2, rank

            def gather(self, tensors):
                captured["share"] = tensors
                return tensors

        copy.deepcopy(model).refresh_text_cache(tokens, batch_size=3, accelerator=OneOfTwoProcesses())
        return captured["share"]

    (rows0, vecs0), (rows1, vecs1) = share_of(0), share_of(1)
    done0, done1 = set(rows0[rows0 >= 0].tolist()), set(rows1[rows1 >= 0].tolist())
    assert done0 and done1 and not done0 & done1
    assert done0 | done1 == set(range(NUM_ITEMS))
    rows, vecs = torch.cat([rows0, rows1]), torch.cat([vecs0, vecs1])
    keep = rows >= 0
    assert torch.equal(vecs[keep], expected[rows[keep] + 1])


def test_launch_options_fit_the_machine():
    from recpipe.launch_config import launch_options

    assert launch_options(0)[1].endswith("cpu.yaml")
    assert launch_options(1)[1].endswith("single_gpu.yaml")
    assert launch_options(4)[1:] == [launch_options(4)[1], "--num_processes", "4"]
    assert all(Path(launch_options(n)[1]).is_file() for n in (0, 1, 4))


def test_end_process_group_leaves_no_group_behind():
    """A launched run destroys its process group itself (left to interpreter exit, gloo can abort a finished rank)."""
    import torch.distributed as dist

    from recpipe.launch_config import end_process_group

    end_process_group()  # no group: nothing to do
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        end_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize(
    "plugin, kind, warned",
    [("fsdp", "MULTI_CPU", True), (None, "MULTI_CPU", False), ("fsdp", "FSDP", False)],
    ids=["fsdp-config-on-cpus", "ddp-on-cpus", "fsdp-sharding"],
)
def test_an_fsdp_config_that_accelerate_runs_as_ddp_is_reported(caplog, monkeypatch, plugin, kind, warned):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from recpipe.base import warn_if_fsdp_falls_back

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    state = SimpleNamespace(fsdp_plugin=plugin, distributed_type=DistributedType[kind])
    with caplog.at_level("WARNING", logger="recpipe.base"):
        warn_if_fsdp_falls_back(SimpleNamespace(state=state, is_main_process=True))
    assert ("does not shard on CPUs" in caplog.text) == warned
