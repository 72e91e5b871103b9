"""Training checkpoints: atomic writes, loading that never unpickles arbitrary objects."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from wildvox.data.files import atomic_path


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, or holds something other than tensors."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a killed process leaves the old file intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused, it holds objects other than tensors ({exc})"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint must hold a dict, found {type(state).__name__}")
    return state
