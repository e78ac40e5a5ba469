"""Checkpoints that serve anywhere: the HTTP API through a real client, a checkpoint moved to another folder (no
prepared data there) still serves, first answers come without the text encoder's libraries, explanations are the
leave-one-out contributions they claim, and hub ids load from the hub cache or fail in one clear line."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from helpers import model_args, training_args

from recpipe.configs import DataArguments
from recpipe.pipeline import run
from recpipe.recommender import Recommender

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir, tmp_path_factory):
    from conftest import save_prepared_as_current, synthetic_prepared

    tmp = tmp_path_factory.mktemp("served")
    prepared = save_prepared_as_current(*synthetic_prepared(), tmp / "prepared")
    margs = model_args(tiny_model_dir, use_item_ids=True)
    run(DataArguments(max_history=10, prepared_dir=prepared), margs, training_args(tmp, max_steps=30))
    return tmp / "out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen | None = None, timeout: float = 90.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stdout.read()}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"no answer from {url} within {timeout} s")


@pytest.fixture(scope="module")
def server(checkpoint):
    """The app on uvicorn in a thread of this process, on a free local port."""
    import uvicorn

    from recpipe.serve import create_app

    rec = Recommender.from_pretrained(checkpoint)
    port = free_port()
    config = uvicorn.Config(create_app(rec, max_k=50, max_body_bytes=20_000), port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/health")
    yield base, rec
    server.should_exit = True
    thread.join(timeout=10)


def test_checkpoint_holds_what_inference_needs(checkpoint):
    for name in ("catalogue.parquet", "known_users.parquet", "item_vectors.safetensors", "index.faiss"):
        assert (checkpoint / name).is_file(), name
    card = (checkpoint / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: recpipe" in card and "from recpipe import Recommender" in card
    import recpipe

    assert recpipe.Recommender is Recommender


def test_saved_vectors_are_what_evaluation_ranks_with(checkpoint):
    from recpipe.evaluation import item_vectors

    rec = Recommender.from_pretrained(checkpoint)
    assert rec._model is None  # served from the saved files, no encoder loaded
    fresh = item_vectors(rec.model, rec.tokens)
    assert torch.allclose(rec.table, fresh.float(), atol=1e-5)
    assert rec.user_vectors([[1, 2, 3]]).allclose(
        rec.model.scoring_vectors(rec.model.last_user_state(fresh, torch.tensor([[1, 2, 3]]))), atol=1e-5
    )


def test_first_answer_loads_no_text_encoder_library(checkpoint):
    code = (
        "import sys; from recpipe.recommender import Recommender; "
        f"r = Recommender.from_pretrained({str(checkpoint)!r}); print(r.recommend(history=['i1', 'i2'], k=3)); "
        "heavy = [m for m in ('transformers', 'peft', 'datasets', 'accelerate') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)


def test_explain_gives_leave_one_out_contributions(checkpoint):
    rec = Recommender.from_pretrained(checkpoint)
    history = ["i3", "i4", "i5", "i9"]
    results = rec.recommend(history=history, k=3, explain=True)
    idx = rec.resolve(history)
    for r in results:
        item = rec.table[rec._index_of[r["item_id"]]]
        full = float(rec.user_vectors([idx]) @ item)
        for because in r["because"]:
            j = history.index(because["item_id"])
            without = float(rec.user_vectors([idx[:j] + idx[j + 1 :]]) @ item)
            assert because["contribution"] == pytest.approx(full - without, abs=1e-5)
            assert because["contribution"] > 0
        drops = sorted(
            (full - float(rec.user_vectors([idx[:j] + idx[j + 1 :]]) @ item) for j in range(4)), reverse=True
        )
        assert [b["contribution"] for b in r["because"]] == pytest.approx([d for d in drops[:3] if d > 0], abs=1e-5)


def test_http_api_through_a_real_client(server):
    base, rec = server
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok" and health["items"] == 40 and health["known_users"] == 60

    answer = httpx.post(f"{base}/recommend", json={"history": ["i1", "w2"], "k": 5, "explain": True})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [i["item_id"] for i in items] == [r["item_id"] for r in rec.recommend(history=["i1", "w2"], k=5)]
    assert all({b["item_id"] for b in i["because"]} <= {"i1", "i2"} for i in items)

    by_user = httpx.post(f"{base}/recommend", json={"user_id": "u3", "k": 4}).json()["items"]
    assert [i["item_id"] for i in by_user] == [r["item_id"] for r in rec.recommend(user_id="u3", k=4)]

    histories = [["i1", "i2"], ["i7"], ["i10", "i11", "i12"]]
    batch = httpx.post(f"{base}/recommend/batch", json={"histories": histories, "k": 3}).json()["results"]
    singles = [httpx.post(f"{base}/recommend", json={"history": h, "k": 3}).json()["items"] for h in histories]
    assert [[i["item_id"] for i in r] for r in batch] == [[i["item_id"] for i in r] for r in singles]

    unknown = httpx.post(f"{base}/recommend", json={"history": ["i1", "No Such Film"]})
    assert unknown.status_code == 404 and "No Such Film" in unknown.json()["detail"]
    assert httpx.post(f"{base}/recommend", json={"user_id": "nobody"}).status_code == 404
    both = httpx.post(f"{base}/recommend", json={"history": ["i1"], "user_id": "u3"})
    assert both.status_code == 422
    assert httpx.post(f"{base}/recommend", json={"history": ["i1"], "k": 0}).status_code == 422
    assert httpx.post(f"{base}/recommend", json={"history": ["i1"], "k": 51}).status_code == 400  # over --max_k
    assert httpx.post(f"{base}/recommend", json={"history": ["i1"], "kk": 3}).status_code == 422  # unknown field
    assert (
        httpx.post(f"{base}/recommend", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    big = {"history": ["i1"] * 900 + ["x" * 100] * 200}
    assert httpx.post(f"{base}/recommend", json=big).status_code == 413


def test_new_items_enter_through_the_api(server):
    base, rec = server
    twin = rec.texts[rec._index_of["i5"]]
    added = httpx.post(f"{base}/items", json={"items": [{"item_id": "new-1", "text": twin, "title": "A new film"}]})
    assert added.status_code == 200 and added.json() == {"added": 1, "items": 41}
    everything = httpx.post(f"{base}/recommend", json={"history": ["i3", "i4"], "k": 41, "exclude_history": False})
    assert "new-1" in [i["item_id"] for i in everything.json()["items"]]
    assert httpx.post(f"{base}/recommend", json={"history": ["new-1", "A new film"], "k": 2}).status_code == 200
    again = httpx.post(f"{base}/items", json={"items": [{"item_id": "new-1", "text": "x"}]})
    assert again.status_code == 400 and "already in the catalogue" in again.json()["detail"]


def test_checkpoint_moved_to_another_folder_still_serves(checkpoint, tmp_path):
    """The checkpoint alone, copied elsewhere, with its prepared data gone: `recpipe serve` (a fresh process, run
    from another folder) and `recpipe recommend` answer as the original does."""
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(checkpoint, moved, ignore=shutil.ignore_patterns("checkpoint-*", "embeddings"))
    prepared = checkpoint.parent / "prepared"
    hidden = checkpoint.parent / "prepared-hidden"
    expected = Recommender.from_pretrained(checkpoint).recommend(history=["i4", "i5"], k=5)
    prepared.rename(hidden)
    cwd = tmp_path / "somewhere-else"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recpipe.cli", "serve", "--checkpoint", str(moved), "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/health", proc).json()["items"] == 40
        served = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"history": ["i4", "i5"], "k": 5}).json()
        assert [i["item_id"] for i in served["items"]] == [r["item_id"] for r in expected]
        out = subprocess.run(
            [sys.executable, "-m", "recpipe.cli", "recommend", "--checkpoint", str(moved), "--history", "i4", "i5"]
            + ["--k", "5", "--json"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert [r["item_id"] for r in json.loads(out.stdout)] == [r["item_id"] for r in expected]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        hidden.rename(prepared)


def test_hub_id_loads_from_a_hub_snapshot_and_fails_clearly_offline(checkpoint, tmp_path, monkeypatch):
    import huggingface_hub

    from recpipe.hub import HubUnreachableError

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--recpipe-tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(checkpoint, snapshot, ignore=shutil.ignore_patterns("checkpoint-*", "embeddings"))
    (cache / "models--someone--recpipe-tiny" / "refs").mkdir()
    (cache / "models--someone--recpipe-tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    rec = Recommender.from_pretrained("someone/recpipe-tiny")
    assert rec.checkpoint_dir == snapshot
    assert rec.recommend(history=["i4", "i5"], k=3) == Recommender.from_pretrained(checkpoint).recommend(
        history=["i4", "i5"], k=3
    )
    with pytest.raises(HubUnreachableError, match="someone/not-cached.*could not provide it"):
        Recommender.from_pretrained("someone/not-cached")


def test_push_to_hub_without_a_reachable_hub_is_one_clear_error(checkpoint, tmp_path):
    closed = free_port()  # nothing listens there
    for env in (
        {"HF_HUB_OFFLINE": "1"},
        {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{closed}", "HF_TOKEN": "hf_unused"},
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "recpipe.cli", "push-to-hub", "--checkpoint", str(checkpoint)]
            + ["--repo_id", "someone/recpipe-tiny"],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert "could not push" in proc.stderr and "Nothing was changed locally" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_training_with_push_to_hub_and_no_hub_stops_at_once_with_one_clear_error(tiny_model_dir, tmp_path):
    from helpers import make_trainer

    from recpipe.hub import HubUnreachableError

    with pytest.raises(HubUnreachableError, match="push_to_hub is set.*recpipe push-to-hub"):
        make_trainer(tiny_model_dir, tmp_path, push_to_hub=True, hub_model_id="someone/recpipe-tiny")


def test_evaluate_from_another_folder_finds_the_prepared_data_or_says_how(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """Training recorded ``prepared_dir`` relative to where it ran; evaluation from elsewhere finds it by its
    absolute path, and without it names the flag and the command that makes it."""
    from conftest import save_prepared_as_current, synthetic_prepared

    from recpipe.cli import main as cli

    monkeypatch.chdir(tmp_path)
    save_prepared_as_current(*synthetic_prepared(), tmp_path / "prepared")
    args = training_args(tmp_path, max_steps=2, output_dir="out")
    metrics = run(DataArguments(max_history=10, prepared_dir="prepared"), model_args(tiny_model_dir), args)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli(["evaluate", "--checkpoint", str(tmp_path / "out")]) == 0
    again = json.loads((tmp_path / "out" / "eval_test_results.json").read_text())
    assert again["test_ndcg@10"] == metrics["test_ndcg@10"]
    (tmp_path / "prepared").rename(tmp_path / "gone")
    assert cli(["evaluate", "--checkpoint", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--prepared_dir DIR" in err and "recpipe data prepare --dataset movielens-100k" in err
