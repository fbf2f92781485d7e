"""Process-level defaults applied by the entry points (never inside library modules)."""

import os
from pathlib import Path


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
