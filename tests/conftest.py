"""Shared fixtures: the wildmix corpus path and thread settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def wildmix_path() -> Path | None:
    """The wildmix corpus: $WILDVOX_DATA, else ../shared/corpora/wildmix beside the repo."""
    env = os.environ.get("WILDVOX_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "corpora" / "wildmix"
    return path if (path / "veri_test.txt").is_file() else None


@pytest.fixture(scope="session")
def wildmix() -> Path:
    path = wildmix_path()
    if path is None:
        pytest.skip("wildmix corpus not found (set WILDVOX_DATA)")
    return path
