"""Print the accelerate config that fits this machine: CPU, one GPU, or DDP over all GPUs (used by ``make train``)."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "accelerate_configs"


def pick_config() -> Path:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    name = "cpu" if gpus == 0 else "single_gpu" if gpus == 1 else "ddp"
    return CONFIGS / f"{name}.yaml"


if __name__ == "__main__":
    print(pick_config())
