"""Which W&B mode a run gets: shared by the trainer's tracker and ``telucodec-eval``, so
both follow the same rules and inference need not import the trainer."""

from __future__ import annotations

import netrc
import os

MODES = ("auto", "online", "offline", "disabled")


def has_wandb_key() -> bool:
    """True when ``WANDB_API_KEY`` is set or ``~/.netrc`` holds a key for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth and auth[2])


def resolve_wandb_mode(enabled: bool, mode: str) -> str:
    """``online``, ``offline`` or ``disabled`` for a requested ``mode`` (one of :data:`MODES`).

    ``auto`` follows ``WANDB_MODE`` when it names a mode, else runs online only with an API
    key and offline otherwise (an offline run is uploaded later with ``wandb sync``).
    """
    if not enabled or mode == "disabled":
        return "disabled"
    env = os.environ.get("WANDB_MODE")
    if mode == "auto":
        if env in ("offline", "online", "disabled"):
            return env
        return "online" if has_wandb_key() else "offline"
    return mode
