"""Process-level defaults applied by the entry points (never inside library modules)."""

import os
from pathlib import Path

import torch


def wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def configure_wandb_mode() -> str:
    """Default W&B to offline when no API key is configured (an unset mode would raise)."""
    if "WANDB_MODE" not in os.environ and not wandb_has_key():
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")


def configure_tf32(enabled: bool) -> None:
    """TF32 matmuls and convolutions on Ampere+ GPUs (fp32 weights, ~8x the fp32 tensor throughput;
    10-bit mantissa products, which GAN training tolerates: EG3D and StyleGAN3 train with it on).
    No effect on CPUs."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def pick_device(name: str) -> torch.device:
    """``--device auto`` of the commands that run without Lightning (generate, invert, evaluate,
    view): CUDA when present, else CPU; any other name is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
