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


if __name__ == "__main__":
    print(" ".join(launch_options()))
