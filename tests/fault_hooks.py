"""Run the ``recpipe`` command in a child process with one fault armed at a chosen point:

    python tests/fault_hooks.py at_step 25 -- train --config run.yaml       SIGKILL before optimizer step 25
    python tests/fault_hooks.py mid_write REGEX -- train ...                SIGKILL once half of the first file whose
                                                                            path matches REGEX is on disk
    python tests/fault_hooks.py call MODULE:ATTR N kill|pause -- data ...   SIGKILL (or a 3 s pause) at the N-th call
    python tests/fault_hooks.py no_unpickling -- train ...                  pickle's loaders fail, torch.load must be
                                                                            weights_only (files it read: on stderr)
    python tests/fault_hooks.py none -- train ...                           no fault

The kill is real (the process sends SIGKILL to itself: no handler, no cleanup, no flush of Python's buffers beyond
what is already written); only its moment is chosen, so that each test hits the same point every time.
"""

import importlib
import io
import os
import re
import signal
import sys
import time


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def at_step(step: str) -> None:
    from transformers import Trainer

    original = Trainer.training_step

    def training_step(self, *args, **kwargs):
        if self.state.global_step + 1 == int(step):
            kill()
        return original(self, *args, **kwargs)

    Trainer.training_step = training_step


def mid_write(pattern: str) -> None:
    """Files go through torch.save (optimizer, scheduler, RNG state) or safetensors (weights, text cache)."""
    import safetensors.torch
    import torch

    import recpipe.checkpointing

    def half_then_kill(path, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        kill()

    torch_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and re.search(pattern, os.fspath(f)):
            buffer = io.BytesIO()
            torch_save(obj, buffer, *args, **kwargs)
            half_then_kill(f, buffer.getvalue())
        return torch_save(obj, f, *args, **kwargs)

    safetensors_save_file = recpipe.checkpointing.save_file

    def save_file(tensors, filename, metadata=None):
        if re.search(pattern, os.fspath(filename)):
            half_then_kill(filename, safetensors.torch.save(tensors, metadata=metadata))
        return safetensors_save_file(tensors, filename, metadata=metadata)

    torch.save = save
    recpipe.checkpointing.save_file = save_file


def call(target: str, n: str, action: str) -> None:
    module_name, attr = target.split(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == int(n):
            if action == "kill":
                kill()
            time.sleep(3.0)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def no_unpickling() -> None:
    """A hostile checkpoint could run code through pickle: every load path must do without it. Patched in a process
    of its own, since modules imported meanwhile could keep the patched functions."""
    import atexit
    import pickle

    import torch

    def unpickle(*args, **kwargs):
        raise AssertionError("a load path unpickled")

    class Unpickler(pickle.Unpickler):  # still a class: libraries subclass it when imported
        load = unpickle

    pickle.load, pickle.loads, pickle.Unpickler = unpickle, unpickle, Unpickler
    torch_load, loaded = torch.load, []

    def weights_only_load(f, *args, **kwargs):
        assert kwargs.get("weights_only") is True, f"torch.load({f}) without weights_only=True"
        loaded.append(os.path.basename(os.fspath(f)))
        return torch_load(f, *args, **kwargs)

    torch.load = weights_only_load
    atexit.register(lambda: print(f"torch.load read {sorted(loaded)}", file=sys.stderr))


if __name__ == "__main__":
    split = sys.argv.index("--")
    hook, hook_args, recpipe_args = sys.argv[1], sys.argv[2:split], sys.argv[split + 1 :]
    if hook != "none":
        hooks = {"at_step": at_step, "mid_write": mid_write, "call": call, "no_unpickling": no_unpickling}
        hooks[hook](*hook_args)
    from recpipe.cli import main

    sys.exit(main(recpipe_args))
