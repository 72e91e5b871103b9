"""Offline augmentation: write augmented copies of a training list as 16 kHz FLAC files.

This is the paper's scheme (13k utterances grew to 59k): every utterance gets augmented copies
on disk, which are then trained on together with the originals. With ``copies_per_utt=None``
each utterance gets one copy per enabled kind (speed, noise, babble, reverb, ...); with an
integer it gets that many copies, each of a kind drawn with the config's weights. ``prob`` and
``enabled`` of the config only concern online use and are ignored here.

Speed-perturbed copies keep their new length (``N / factor``) and, with
``speed_as_new_speaker``, are labelled as new speakers (``spk@sp0.9``, WeSpeaker style).
Babble talkers come from ``babble_pool``, else ``<noise_dir>/speech``, else utterances of the
other speakers of ``items``. Copy ``c`` of item ``i`` uses the generator seeded with
``(rng_seed, i, c)``, so the output does not depend on ``num_workers``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from wildvox.augment.chain import Augmenter, babble_source, build_augmenter
from wildvox.augment.noise import BabblePool, read_audio
from wildvox.augment.reverb import load_or_create_rir_bank
from wildvox.augment.speed import SpeedPerturb, speed_perturb, speed_speaker_id
from wildvox.config import AUGMENT_KINDS as KINDS
from wildvox.config import AugmentConfig
from wildvox.data.files import atomic_write

log = logging.getLogger(__name__)

LIST_NAME = "augmented_list.txt"
"""The list file written in ``out_dir``: ``<speaker> <path relative to out_dir>`` lines."""


class _OtherSpeakers:
    """Babble source drawing one utterance of a speaker other than ``speaker`` per call."""

    def __init__(self, items: Sequence[tuple[str, str]], speaker: str, sample_rate: int) -> None:
        self.items = items
        self.speaker = speaker
        self.sample_rate = sample_rate

    def __call__(self, rng: np.random.Generator) -> list[np.ndarray]:
        while True:
            other, path = self.items[int(rng.integers(0, len(self.items)))]
            if other != self.speaker:
                return [read_audio(path, self.sample_rate)]


@dataclass(frozen=True)
class _Job:
    index: int
    copy: int
    kind: str | None  # None: draw the kind with the config weights


@dataclass
class _Context:
    """Everything a worker needs; pickled once per shard of jobs."""

    items: Sequence[tuple[str, str]]
    out_dir: Path
    config: AugmentConfig
    rng_seed: int
    speed_as_new_speaker: bool
    babble_pool: BabblePool | None  # None: other speakers of ``items``
    sample_rate: int
    augmenters: dict[str, Augmenter] = field(default_factory=dict)

    def augmenter(self, kind: str, speaker: str) -> Augmenter:
        """The augmenter of ``kind`` (built once per process; babble per speaker if needed)."""
        if kind == "babble" and self.babble_pool is None:
            pool = _OtherSpeakers(self.items, speaker, self.sample_rate)
            return build_augmenter(kind, self.config, pool, sample_rate=self.sample_rate)
        if kind not in self.augmenters:
            self.augmenters[kind] = build_augmenter(
                kind, self.config, self.babble_pool, sample_rate=self.sample_rate
            )
        return self.augmenters[kind]

    def draw_kind(self, rng: np.random.Generator) -> str:
        """A kind drawn with the config's relative weights."""
        weights = self.config.weights()
        probs = np.array(list(weights.values())) / sum(weights.values())
        return list(weights)[int(rng.choice(len(weights), p=probs))]


def _check_speaker(speaker: str) -> None:
    if not speaker or speaker in (".", "..") or "/" in speaker or any(c.isspace() for c in speaker):
        raise ValueError(f"speaker id {speaker!r} must be non-empty, without '/' or whitespace")


def _write(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit FLAC, scaling the waveform down (never up) when it would clip."""
    peak = float(np.max(np.abs(wav)))
    if peak > 1.0:
        wav = wav * (0.999 / peak)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.astype(np.float32), sample_rate, format="FLAC", subtype="PCM_16")


def _run(ctx: _Context, job: _Job) -> tuple[str, str]:
    """Make and write one augmented copy; returns ``(speaker, path relative to out_dir)``."""
    speaker, src = ctx.items[job.index]
    rng = np.random.default_rng([ctx.rng_seed, job.index, job.copy])
    kind = job.kind if job.kind is not None else ctx.draw_kind(rng)
    wav = read_audio(src, ctx.sample_rate)
    out_speaker, tag = speaker, kind
    if kind == "speed":
        factor = SpeedPerturb(ctx.config.speed_factors).sample_factor(rng)
        out = speed_perturb(wav, factor)
        tag = f"sp{factor:g}"
        if ctx.speed_as_new_speaker:
            out_speaker = speed_speaker_id(speaker, factor)
    else:
        out = ctx.augmenter(kind, speaker)(wav, rng)
    rel = Path("wav") / out_speaker / f"{Path(src).stem}_{job.index:06d}_{job.copy}_{tag}.flac"
    _write(ctx.out_dir / rel, out, ctx.sample_rate)
    return out_speaker, rel.as_posix()


def _run_shard(args: tuple[_Context, list[_Job]]) -> list[tuple[str, str]]:
    ctx, jobs = args
    return [_run(ctx, job) for job in jobs]


def materialize(
    items: Sequence[tuple[str, str]],
    out_dir: str | Path,
    config: AugmentConfig,
    rng_seed: int,
    copies_per_utt: int | None = None,
    speed_as_new_speaker: bool = False,
    num_workers: int = 1,
    babble_pool: BabblePool | None = None,
    sample_rate: int = 16000,
) -> list[tuple[str, str]]:
    """Write augmented copies of ``items`` under ``out_dir`` and list them.

    Args:
        items: ``(speaker, audio path)`` pairs of the original training list.
        out_dir: output folder; files go to ``out_dir/wav/<speaker>/`` and the list to
            ``out_dir/augmented_list.txt``. Existing files of the same name are overwritten.
        config: kinds, weights and options (``enabled`` and ``prob`` are ignored).
        rng_seed: seed of all randomness; the same seed gives the same files.
        copies_per_utt: copies per utterance with kinds drawn by weight; None: one copy of
            each enabled kind.
        speed_as_new_speaker: label speed-perturbed copies ``<speaker>@sp<factor>``.
        num_workers: processes writing files (1: in this process).
        babble_pool: babble sources; default ``<noise_dir>/speech``, else other speakers.
        sample_rate: of the written files, in Hz.

    Returns:
        ``(speaker, absolute path)`` of every augmented copy, in list-file order (the
        originals are not included).
    """
    if copies_per_utt is not None and copies_per_utt <= 0:
        raise ValueError(f"copies_per_utt must be positive or None, got {copies_per_utt}")
    if num_workers <= 0:
        raise ValueError(f"num_workers must be positive, got {num_workers}")
    weights = config.weights()
    if not weights:
        raise ValueError("every augmentation kind has weight 0: nothing to materialise")
    for speaker, path in items:
        _check_speaker(speaker)
        if not Path(path).is_file():
            raise FileNotFoundError(f"audio file {path} (speaker {speaker}) does not exist")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool = babble_source(config, babble_pool)
    if "babble" in weights and pool is None and len({s for s, _ in items}) < 2:
        raise ValueError("babble from the training list needs at least two speakers")
    if "reverb" in weights and config.rir_dir is None:  # simulate once, before the workers
        bank_path = config.rir_bank or str(out / "rir_bank.npz")
        config = dataclasses.replace(config, rir_bank=bank_path)
        load_or_create_rir_bank(bank_path, config.rir_bank_size, config.rir_seed, sample_rate)
    kinds: list[str | None] = (
        [k for k in KINDS if k in weights] if copies_per_utt is None else [None] * copies_per_utt
    )
    jobs = [_Job(i, c, kind) for i in range(len(items)) for c, kind in enumerate(kinds)]
    ctx = _Context(list(items), out, config, rng_seed, speed_as_new_speaker, pool, sample_rate)
    log.info("writing %d augmented copies of %d utterances to %s", len(jobs), len(items), out)
    if num_workers == 1 or len(jobs) <= 1:
        results = _run_shard((ctx, jobs))
    else:
        num_shards = min(len(jobs), 4 * num_workers)
        bounds = np.linspace(0, len(jobs), num_shards + 1).astype(int)
        shards = [(ctx, jobs[a:b]) for a, b in itertools.pairwise(bounds)]
        with multiprocessing.get_context().Pool(num_workers) as workers:
            results = [r for part in workers.map(_run_shard, shards) for r in part]
    lines = "".join(f"{speaker} {rel}\n" for speaker, rel in results)
    atomic_write(out / LIST_NAME, lines)
    return [(speaker, str((out / rel).resolve())) for speaker, rel in results]
