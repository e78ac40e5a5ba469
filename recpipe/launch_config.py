"""Print the ``accelerate launch`` options that fit this machine (used by ``make train``): the CPU config, one GPU,
or DDP over every GPU with ``--num_processes`` set to their count."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "accelerate_configs"


def launch_options(gpus: int | None = None) -> list[str]:
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:
        return ["--config_file", str(CONFIGS / "cpu.yaml")]
    if gpus == 1:
        return ["--config_file", str(CONFIGS / "single_gpu.yaml")]
    return ["--config_file", str(CONFIGS / "ddp.yaml"), "--num_processes", str(gpus)]


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
    print(" ".join(launch_options()))
