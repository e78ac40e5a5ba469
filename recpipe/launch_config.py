"""The accelerate configs shipped inside the package (``recpipe/accelerate_configs/``: cpu, single_gpu, ddp, fsdp,
deepspeed_zero2), and the ``accelerate launch`` options that fit this machine (used by ``make train``): the CPU
config, one GPU, or DDP over every GPU with ``--num_processes`` set to their count::

    accelerate launch $(python -m recpipe.launch_config) recipes/movielens.py --config CONFIG.yaml
    accelerate launch --config_file $(python -m recpipe.launch_config ddp) recipes/movielens.py ...
"""

from __future__ import annotations

import sys
from pathlib import Path

from recpipe.errors import InvalidInputError

CONFIGS = Path(__file__).resolve().parent / "accelerate_configs"


def accelerate_config(name: str) -> Path:
    """The path of a packaged accelerate config by name (``cpu``, ``single_gpu``, ``ddp``, ``fsdp``, ...)."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
        raise InvalidInputError(f"no packaged accelerate config {name!r}; choose one of {known}")
    return path


def launch_options(gpus: int | None = None) -> list[str]:
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:
        return ["--config_file", str(accelerate_config("cpu"))]
    if gpus == 1:
        return ["--config_file", str(accelerate_config("single_gpu"))]
    return ["--config_file", str(accelerate_config("ddp")), "--num_processes", str(gpus)]


def end_process_group(wait: bool = True) -> None:
    """Destroy the default process group at the end of a launched run. Left to the interpreter's exit, gloo's
    threads can be torn down while still joinable, and a process that finished its work aborts with
    "terminate called without an active exception" (SIGABRT), failing the whole launch. ``wait=False`` on error
    paths, where the other processes may never arrive."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:  # nobody leaves while another process still needs a collective
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    print(accelerate_config(sys.argv[1]) if len(sys.argv) > 1 else " ".join(launch_options()))
