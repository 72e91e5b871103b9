"""The environment stays CPU-only: no CUDA-linked torchaudio/torchvision slipped in."""

import importlib.util

import torch


def test_no_torchaudio_or_torchvision() -> None:
    # both are CUDA-linked builds here and break at import; a dependency that pulls them in
    # (speechbrain, silero-vad's extras) must be caught
    assert importlib.util.find_spec("torchaudio") is None
    assert importlib.util.find_spec("torchvision") is None


def test_torch_is_the_pinned_cpu_build() -> None:
    assert torch.__version__.startswith("2.13.0")
    assert torch.version.cuda is None
