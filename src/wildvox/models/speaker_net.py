"""Waveform-to-embedding network: feature extractor + embedder, built from a config."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import wildvox.audio.features  # noqa: F401  (registers the feature extractors)
from wildvox.config import Config
from wildvox.models.embedder import Embedder, build_embedder
from wildvox.registry import FEATURES


class SpeakerNet(nn.Module):
    """``(B, N)`` waveforms at 16 kHz (+ valid sample counts) -> ``(B, D)`` embeddings.

    Features are computed without gradient (they have no parameters) and outside the backbone,
    as the tensor contract asks.
    """

    def __init__(self, features: nn.Module, embedder: Embedder) -> None:
        super().__init__()
        self.features = features
        self.embedder = embedder

    @property
    def embed_dim(self) -> int:
        return int(self.embedder.embed_dim)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            feats, frames = self.features(wave, lengths)
        return self.embedder(feats, frames if lengths is not None else None)


def build_features(cfg: Config) -> nn.Module:
    f = cfg.features
    module: nn.Module = FEATURES.build(
        f.kind,
        n_mels=f.n_mels,
        sample_rate=f.sample_rate,
        frame_length_ms=f.frame_length_ms,
        frame_shift_ms=f.frame_shift_ms,
        cmn=f.cmn,
    )
    return module


def build_speaker_net(cfg: Config) -> SpeakerNet:
    features = build_features(cfg)
    embedder = build_embedder(
        feat_dim=int(features.out_dim),  # type: ignore[arg-type]
        backbone=cfg.model.backbone,
        pooling=cfg.model.pooling,
        embed_dim=cfg.model.embed_dim,
        backbone_args=cfg.model.backbone_args,
        pooling_args=cfg.model.pooling_args,
    )
    return SpeakerNet(features, embedder)
