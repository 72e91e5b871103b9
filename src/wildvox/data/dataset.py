"""Training crops and full-length evaluation batches.

Randomness is a pure function of ``(seed, epoch, index)``: the crop of an utterance and its
augmentation do not depend on which worker process loads it, so a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from wildvox.audio.io import AudioError, audio_info, load_audio
from wildvox.data.manifest import Utterance

logger = logging.getLogger(__name__)

Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _decode(args: tuple[str, int, float]) -> np.ndarray | str:
    path, sample_rate, min_seconds = args
    try:
        return load_audio(path, sample_rate=sample_rate, min_duration=min_seconds)
    except AudioError as exc:
        return str(exc)


class AudioBank:
    """Every training waveform decoded once into one float32 array (shared by forked workers).

    >>> bank = AudioBank.from_arrays([np.ones(3, np.float32), np.zeros(2, np.float32)])
    >>> bank.get(1).shape, len(bank)
    ((2,), 2)
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = data
        self.offsets = offsets

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> AudioBank:
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(a) for a in arrays])
        data = np.concatenate(arrays).astype(np.float32, copy=False) if arrays else np.zeros(0)
        return cls(data, offsets)

    @classmethod
    def decode(
        cls, paths: Sequence[str], sample_rate: int, min_seconds: float, num_workers: int = 2
    ) -> AudioBank:
        """Decode ``paths`` in ``num_workers`` processes; every unreadable file is reported."""
        jobs = [(p, sample_rate, min_seconds) for p in paths]
        if num_workers > 1 and len(jobs) > 64:
            with mp.get_context("fork").Pool(num_workers) as pool:
                results = pool.map(_decode, jobs, chunksize=64)
        else:
            results = [_decode(j) for j in jobs]
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            shown = "\n  ".join(errors[:10])
            raise AudioError(
                errors[0].split(":", 1)[0],
                f"{len(errors)} training files cannot be used:\n  {shown}",
            )
        arrays = [r for r in results if not isinstance(r, str)]
        bank = cls.from_arrays(arrays)
        logger.info(
            "decoded %d files, %.1f h of audio", len(arrays), len(bank.data) / sample_rate / 3600
        )
        return bank

    def get(self, index: int) -> np.ndarray:
        return self.data[self.offsets[index] : self.offsets[index + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1


def random_crop(wav: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of ``num_samples``; shorter input is repeated to length first.

    >>> random_crop(np.arange(3, dtype=np.float32), 7, np.random.default_rng(0)).tolist()
    [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    """
    if len(wav) < num_samples:
        return np.resize(wav, num_samples).astype(np.float32, copy=False)
    start = int(rng.integers(0, len(wav) - num_samples + 1))
    return wav[start : start + num_samples]


class TrainingBabble:
    """Babble talkers for online augmentation: training utterances drawn with the item's rng.

    Each call returns one whole utterance (the babble augmenter crops it). Talkers are drawn
    from all training utterances, so with ``C`` speakers a talker is the item's own speaker
    with probability about ``1 / C``; we accept that rather than pass the label through the
    augmenter interface.
    """

    def __init__(self, bank: AudioBank | None, paths: Sequence[str], sample_rate: int) -> None:
        self.bank = bank
        self.paths = list(paths)
        self.sample_rate = sample_rate

    def __call__(self, rng: np.random.Generator) -> list[np.ndarray]:
        index = int(rng.integers(0, len(self.paths)))
        if self.bank is not None:
            return [self.bank.get(index)]
        return [load_audio(self.paths[index], sample_rate=self.sample_rate, min_duration=0.0)]


class CropDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """Fixed-length random crops with speaker labels; indexed by ``(epoch, index)``, an item is
    ``(crop, label, index)`` (the index finds per-utterance targets such as a teacher's)."""

    def __init__(
        self,
        utterances: Sequence[Utterance],
        labels: Sequence[int],
        crop_seconds: float,
        sample_rate: int = 16000,
        seed: int = 0,
        bank: AudioBank | None = None,
        augment: Augmenter | None = None,
        min_seconds: float = 0.1,
    ) -> None:
        if len(utterances) != len(labels):
            raise ValueError("one label per utterance")
        self.paths = [str(u.path) for u in utterances]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_samples = round(crop_seconds * sample_rate)
        self.sample_rate = sample_rate
        self.seed = seed
        self.bank = bank
        self.augment = augment
        self.min_seconds = min_seconds

    def __len__(self) -> int:
        return len(self.paths)

    def _read_crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        if self.bank is not None:
            return random_crop(self.bank.get(index), self.num_samples, rng)
        path = self.paths[index]
        total = round(audio_info(path).duration * self.sample_rate)
        if total <= self.num_samples:
            wav = load_audio(path, sample_rate=self.sample_rate, min_duration=self.min_seconds)
            return random_crop(wav, self.num_samples, rng)
        # the same draw as random_crop on the decoded file, but only the window is read
        start = int(rng.integers(0, total - self.num_samples + 1))
        wav = load_audio(
            path,
            sample_rate=self.sample_rate,
            offset=start / self.sample_rate,
            duration=self.num_samples / self.sample_rate,
            min_duration=self.min_seconds,
        )
        return random_crop(wav, self.num_samples, rng)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        wav = self._read_crop(index, rng)
        if self.augment is not None:
            wav = self.augment(np.array(wav, dtype=np.float32), rng)
        crop = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        return crop, int(self.labels[index]), index


def collate_crops(
    items: list[tuple[torch.Tensor, int, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(wavs (B, N), labels (B,), utterance indices (B,))``."""
    wavs = torch.stack([w for w, _, _ in items])
    labels = torch.tensor([label for _, label, _ in items], dtype=torch.long)
    indices = torch.tensor([index for _, _, index in items], dtype=torch.long)
    return wavs, labels, indices


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Shuffled batches of ``(epoch, index)`` keys; seeded per epoch, resumable mid-epoch.

    With ``world_size > 1`` each rank takes every ``world_size``-th batch of the same global
    permutation, so the ranks together see what one process would with the same batch count.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size < 1 or size < batch_size:
            raise ValueError(f"batch size {batch_size} needs at least that many items ({size})")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def global_batches(self) -> int:
        return self.size // self.batch_size

    def __len__(self) -> int:
        return max(0, (self.global_batches() // self.world_size) - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        per_rank = self.global_batches() // self.world_size
        for b in range(self.start_batch, per_rank):
            g = b * self.world_size + self.rank
            chunk = order[g * self.batch_size : (g + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk]


@dataclass(frozen=True)
class EvalItem:
    index: int
    wav: torch.Tensor | None
    error: str = ""


class FullUtteranceDataset(Dataset[EvalItem]):
    """Whole utterances (up to ``max_seconds``) for embedding extraction."""

    def __init__(
        self,
        paths: Sequence[str],
        sample_rate: int = 16000,
        max_seconds: float = 30.0,
        min_seconds: float = 0.1,
    ) -> None:
        self.paths = list(paths)
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.min_seconds = min_seconds

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> EvalItem:
        """The waveform, or the reason it cannot be read (reported, never raised mid-batch)."""
        try:
            wav = load_audio(
                self.paths[index],
                sample_rate=self.sample_rate,
                duration=self.max_seconds,
                min_duration=self.min_seconds,
            )
        except AudioError as exc:
            return EvalItem(index, None, str(exc))
        return EvalItem(index, torch.from_numpy(wav))


def length_batches(durations: Sequence[float], batch_seconds: float) -> list[list[int]]:
    """Group indices sorted by duration so each padded batch holds <= ``batch_seconds``.

    >>> length_batches([1.0, 5.0, 1.2, 4.0], batch_seconds=8.0)
    [[0, 2], [3], [1]]
    """
    order = np.argsort(np.asarray(durations), kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order.tolist():
        longest = durations[i]  # sorted ascending: the newest item is the longest
        if current and longest * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class PaddedBatch:
    """``wavs`` (B, N_max) zero-padded, ``lengths`` (B,) samples, ``indices`` (B,) into the
    dataset, and ``errors`` [(index, reason)] for items that could not be read."""

    indices: torch.Tensor
    wavs: torch.Tensor
    lengths: torch.Tensor
    errors: list[tuple[int, str]]


def collate_padded(items: list[EvalItem]) -> PaddedBatch:
    good = [(it.index, it.wav) for it in items if it.wav is not None]
    errors = [(it.index, it.error) for it in items if it.wav is None]
    lengths = torch.tensor([len(w) for _, w in good], dtype=torch.long)
    wavs = torch.zeros(len(good), int(lengths.max()) if good else 0)
    for row, (_, w) in enumerate(good):
        wavs[row, : len(w)] = w
    return PaddedBatch(torch.tensor([i for i, _ in good], dtype=torch.long), wavs, lengths, errors)
