"""Checkpoints on the Hugging Face Hub, by its conventions: ``from_pretrained`` takes a local folder or a hub id
(``owner/name``, downloaded once into the hub cache by ``huggingface_hub.snapshot_download``, which also serves it
offline from there); ``push_to_hub`` uploads a checkpoint folder into a model repository.

Without a network (or with ``HF_HUB_OFFLINE=1``) a hub id that is not in the cache, and every push, end in one
``UserError`` that says what failed and how to go on, never a traceback from the HTTP client.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from recpipe.errors import MissingInputError, UserError

# what a push leaves out: resumable training checkpoints, the pretraining stage, logs of local dashboards
PUSH_IGNORE = ["checkpoint-*/**", "pretrain/**", "runs/**", "wandb/**", "*.tmp"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class HubUnreachableError(UserError, ConnectionError):
    """The Hugging Face Hub could not be reached (offline, or refused)."""


def hub_errors() -> tuple[type[BaseException], ...]:
    """What ``huggingface_hub`` raises when the Hub cannot answer: its own errors, OS-level connection errors, and
    the transport errors of the HTTP client it uses (``httpx`` or ``httpx2``, depending on its version)."""
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [OSError, HfHubHTTPError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def resolve_checkpoint(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """A local checkpoint folder as it is, or a hub id's snapshot folder (downloaded if not yet cached)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if not _REPO_ID.match(name):
        raise MissingInputError(f"{name}: no such checkpoint folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, revision=revision))
    except hub_errors() as e:
        raise HubUnreachableError(
            f"{name}: no such checkpoint folder here, and the Hugging Face Hub ({_endpoint()}) could not provide it "
            f"({type(e).__name__}: {str(e).splitlines()[0]}). Check the repository id and the network, or pass "
            "the checkpoint's local folder"
        ) from None


def push_to_hub(
    checkpoint_dir: str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload recpipe checkpoint",
) -> str:
    """Upload a checkpoint folder (weights, configs, tokenizer, model card, catalogue, item vectors, index) into the
    model repository ``repo_id``, creating it if needed. Returns the URL of the commit."""
    folder = Path(checkpoint_dir)
    if not any((folder / name).is_file() for name in ("recpipe_config.json", "ctr_config.json")):
        raise MissingInputError(f"{folder} is not a recpipe checkpoint (no recpipe_config.json or ctr_config.json)")
    if not _REPO_ID.match(repo_id):
        raise UserError(f"{repo_id!r} is not a hub repository id (owner/name)")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            commit_message=commit_message,
            ignore_patterns=PUSH_IGNORE,
        )
    except hub_errors() as e:
        raise HubUnreachableError(
            f"could not push {folder} to {repo_id} on the Hugging Face Hub ({_endpoint()}): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no answer'}. Nothing was changed locally; "
            "log in with `hf auth login` (or set HF_TOKEN) and retry when the Hub is reachable"
        ) from None
    return str(getattr(info, "commit_url", info))


def unreachable_for_training(error: BaseException) -> HubUnreachableError:
    """The error a run with ``push_to_hub: true`` ends in when the Hub cannot be reached at its start."""
    return HubUnreachableError(
        f"push_to_hub is set but the Hugging Face Hub ({_endpoint()}) cannot be reached "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no answer'}). Train without it "
        "(--push_to_hub false) and push the checkpoint later with `recpipe push-to-hub`"
    )
