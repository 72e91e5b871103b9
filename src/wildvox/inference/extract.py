"""Batched embedding extraction of full-length utterances."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from wildvox.audio.io import AudioError, audio_info
from wildvox.config import Config
from wildvox.data.dataset import FullUtteranceDataset, collate_padded, length_batches
from wildvox.models.speaker_net import SpeakerNet

logger = logging.getLogger(__name__)


@dataclass
class Extraction:
    """``embeddings`` (N, D) float32 and ``durations`` (N,) seconds for ``ok`` (indices into the
    input paths, in input order); ``failed`` holds (path, reason) for unreadable files."""

    ok: list[int]
    embeddings: np.ndarray
    durations: np.ndarray
    failed: list[tuple[str, str]]


def extract_embeddings(
    net: SpeakerNet,
    paths: Sequence[str],
    config: Config | None = None,
    *,
    sample_rate: int = 16000,
    batch_seconds: float = 400.0,
    max_seconds: float = 30.0,
    min_seconds: float = 0.1,
    num_workers: int = 1,
    device: str | torch.device = "cpu",
    on_error: str = "raise",
    progress: Callable[[int], None] | None = None,
) -> Extraction:
    """Embed every file in ``paths``, batching utterances of similar length.

    ``config`` (the model's own, as saved with it) sets the sample rate, the batch size in
    seconds, the length cap and the shortest accepted file (``features.sample_rate``,
    ``eval.batch_seconds``, ``eval.max_seconds``, ``dataset.min_seconds``), overriding the
    keyword values. ``on_error="raise"`` raises :class:`AudioError` for the first bad file;
    ``"skip"`` embeds the good files and reports the bad ones in ``failed`` (a file whose
    embedding is not finite counts as bad). ``progress`` is called with the number of files
    finished after each batch.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if config is not None:
        sample_rate, min_seconds = config.features.sample_rate, config.dataset.min_seconds
        batch_seconds, max_seconds = config.eval.batch_seconds, config.eval.max_seconds
    failed: dict[int, str] = {}
    durations = np.zeros(len(paths), dtype=np.float32)
    for i, p in enumerate(paths):
        try:
            durations[i] = min(audio_info(p).duration, max_seconds)
        except AudioError as exc:
            if on_error == "raise":
                raise
            failed[i] = str(exc)
    todo = [i for i in range(len(paths)) if i not in failed]
    batches = [
        [todo[j] for j in b] for b in length_batches(durations[todo].tolist(), batch_seconds)
    ]
    dataset = FullUtteranceDataset(paths, sample_rate, max_seconds, min_seconds)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=collate_padded,
        multiprocessing_context="fork" if num_workers > 0 else None,
    )
    out = np.zeros((len(paths), net.embed_dim), dtype=np.float32)
    done = np.zeros(len(paths), dtype=bool)
    net.eval()
    with torch.inference_mode():
        for batch in loader:
            for index, reason in batch.errors:
                if on_error == "raise":
                    raise AudioError(paths[index], reason.split(": ", 1)[-1])
                failed[index] = reason
            if len(batch.indices):
                lengths = batch.lengths if len(batch.indices) > 1 else None
                emb = net(batch.wavs.to(device), None if lengths is None else lengths.to(device))
                rows = emb.float().cpu().numpy()
                finite = np.isfinite(rows).all(axis=1)
                for index in batch.indices.numpy()[~finite].tolist():
                    if on_error == "raise":
                        raise AudioError(paths[index], "the model's embedding is not finite")
                    failed[index] = f"{paths[index]}: the model's embedding is not finite"
                out[batch.indices.numpy()[finite]] = rows[finite]
                done[batch.indices.numpy()[finite]] = True
            if progress is not None:
                progress(len(batch.indices) + len(batch.errors))
    ok = np.flatnonzero(done).tolist()
    if failed:
        logger.warning("%d of %d files could not be embedded", len(failed), len(paths))
    return Extraction(
        ok=ok,
        embeddings=out[ok],
        durations=durations[ok],
        failed=[(paths[i], failed[i]) for i in sorted(failed)],
    )
