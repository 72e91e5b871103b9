"""Batch samplers beyond plain shuffling: hard prototype mining (HPM).

HPM (Thienpondt et al., Interspeech 2020, used by the IDLab VoxSRC-20 large-margin fine-tuning
with ``S=16, I=8, U=1``) fills each batch with speakers that the classifier finds hard to tell
apart: a random *seed* speaker plus its ``S - 1`` nearest speakers, nearest by the cosine
between the margin head's class prototypes, and ``I`` utterances of each. We read ``U`` as the
number of such seed groups per batch, so a batch holds ``U * S * I`` utterances (128 in the
paper, its batch size). The neighbour table is recomputed from the prototypes at the start of
every epoch (:meth:`HardPrototypeSampler.update_prototypes`) and is part of
:meth:`~HardPrototypeSampler.state_dict`, so a run resumed mid-epoch draws the same batches.

Like :class:`~wildvox.data.dataset.EpochBatchSampler` it yields ``(epoch, index)`` keys, its
randomness is a function of ``(seed, epoch, batch)``, and ``set_epoch(epoch, start_batch)``
resumes mid-epoch. With ``world_size > 1`` every rank builds the same global batch and takes
its contiguous ``1 / world_size`` share.

    >>> import torch
    >>> labels = [0, 0, 1, 1, 2, 2, 3, 3]
    >>> sampler = HardPrototypeSampler(labels, num_batches=2, speakers_per_batch=2,
    ...                                utts_per_speaker=2)
    >>> protos = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> sampler.update_prototypes(protos)
    >>> sampler.neighbours.tolist()
    [[1], [0], [3], [2]]
    >>> batch = next(iter(sampler))
    >>> len(batch), sorted({labels[i] for _, i in batch}) in ([0, 1], [2, 3])
    (4, True)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from wildvox.config import Config
from wildvox.data.dataset import EpochBatchSampler

logger = logging.getLogger(__name__)

SAMPLERS = ("random", "hpm")
"""Values of ``dataset.sampler``."""


class HardPrototypeSampler(Sampler[list[tuple[int, int]]]):
    """Hard prototype mining batches of ``(epoch, index)`` keys.

    Args:
        labels: class index of every dataset item, ``(N,)``.
        num_batches: batches per epoch (the trainer uses ``N // batch_size``).
        speakers_per_batch: ``S``, speakers per seed group (seed + ``S - 1`` neighbours).
        utts_per_speaker: ``I``, utterances per speaker (drawn with replacement only when a
            speaker has fewer).
        seed_speakers: ``U``, seed groups per batch; the batch size is ``U * S * I``.
        seed: base seed of all draws.
        rank, world_size: this process' share of every batch in distributed training.
    """

    def __init__(
        self,
        labels: Sequence[int],
        num_batches: int,
        speakers_per_batch: int = 16,
        utts_per_speaker: int = 8,
        seed_speakers: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if min(speakers_per_batch, utts_per_speaker, seed_speakers, num_batches) < 1:
            raise ValueError(
                "speakers_per_batch, utts_per_speaker, seed_speakers and num_batches must be "
                f"positive, got {speakers_per_batch}, {utts_per_speaker}, {seed_speakers}, "
                f"{num_batches}"
            )
        label_array = np.asarray(labels, dtype=np.int64)
        if label_array.ndim != 1 or label_array.size == 0 or label_array.min() < 0:
            raise ValueError("labels must be a non-empty sequence of class indices >= 0")
        self.num_classes = int(label_array.max()) + 1
        order = np.argsort(label_array, kind="stable")
        bounds = np.searchsorted(label_array[order], np.arange(self.num_classes + 1))
        self.items_of = [order[bounds[c] : bounds[c + 1]] for c in range(self.num_classes)]
        empty = [c for c, items in enumerate(self.items_of) if len(items) == 0]
        if empty:
            raise ValueError(f"classes {empty[:5]} have no items; labels must be 0..C-1")
        if speakers_per_batch > self.num_classes:
            raise ValueError(
                f"hard prototype mining needs at least {speakers_per_batch} speakers per batch "
                f"(dataset.hpm_speakers) but the data has {self.num_classes}"
            )
        self.batch_size = seed_speakers * speakers_per_batch * utts_per_speaker
        if world_size < 1 or not 0 <= rank < world_size or self.batch_size % world_size:
            raise ValueError(
                f"the batch of {self.batch_size} cannot be split over {world_size} processes "
                f"(rank {rank})"
            )
        self.num_batches = num_batches
        self.speakers_per_batch = speakers_per_batch
        self.utts_per_speaker = utts_per_speaker
        self.seed_speakers = seed_speakers
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        self.neighbours: torch.Tensor | None = None
        self.neighbours_epoch = -1

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def update_prototypes(self, prototypes: torch.Tensor) -> None:
        """Recompute every speaker's ``S - 1`` nearest speakers from ``prototypes (C, D)``.

        Similarity is the cosine (prototypes are length-normalised here), computed in float64
        on the CPU so that every process and device gets the same table.
        """
        if prototypes.dim() != 2 or prototypes.shape[0] != self.num_classes:
            raise ValueError(
                f"prototypes must have shape ({self.num_classes}, D), got {tuple(prototypes.shape)}"
            )
        protos = F.normalize(prototypes.detach().to("cpu", torch.float64), dim=1)
        sim = protos @ protos.T
        sim.fill_diagonal_(float("-inf"))
        k = self.speakers_per_batch - 1
        self.neighbours = torch.topk(sim, k, dim=1).indices if k else sim.new_zeros(
            (self.num_classes, 0), dtype=torch.long
        )  # fmt: skip
        self.neighbours_epoch = self.epoch
        logger.debug("hard prototype mining: neighbour table for epoch %d", self.epoch)

    def global_batches(self) -> int:
        return self.num_batches

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start_batch)

    def _seed_order(self) -> np.ndarray:
        """Seed speakers of the whole epoch: shuffled passes over all speakers."""
        rng = np.random.default_rng([self.seed, self.epoch])
        needed = self.num_batches * self.seed_speakers
        passes = -(-needed // self.num_classes)
        return np.concatenate([rng.permutation(self.num_classes) for _ in range(passes)])[:needed]

    def batch(self, index: int, seeds: np.ndarray) -> list[tuple[int, int]]:
        """The whole (all ranks) batch ``index`` of the epoch for the given seed speakers."""
        if self.neighbours is None:
            raise RuntimeError("call update_prototypes (or load_state_dict) before sampling")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        keys: list[tuple[int, int]] = []
        for seed_speaker in seeds.tolist():
            group = [seed_speaker, *self.neighbours[seed_speaker].tolist()]
            for speaker in group:
                items = self.items_of[speaker]
                replace = len(items) < self.utts_per_speaker
                picks = rng.choice(len(items), size=self.utts_per_speaker, replace=replace)
                keys += [(self.epoch, int(items[p])) for p in picks]
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.neighbours is not None and self.neighbours_epoch != self.epoch:
            logger.warning(
                "hard prototype mining: neighbours are from epoch %d, sampling epoch %d",
                self.neighbours_epoch + 1, self.epoch + 1,
            )  # fmt: skip
        order = self._seed_order()
        share = self.batch_size // self.world_size
        u = self.seed_speakers
        for b in range(self.start_batch, self.num_batches):
            keys = self.batch(b, order[b * u : (b + 1) * u])
            yield keys[self.rank * share : (self.rank + 1) * share]

    def state_dict(self) -> dict[str, Any]:
        """The neighbour table and the epoch it was computed for (tensors and ints only)."""
        return {"neighbours": self.neighbours, "neighbours_epoch": self.neighbours_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        neighbours = state["neighbours"]
        if neighbours is not None and tuple(neighbours.shape) != (
            self.num_classes,
            self.speakers_per_batch - 1,
        ):
            raise ValueError(
                f"saved neighbour table has shape {tuple(neighbours.shape)}, expected "
                f"({self.num_classes}, {self.speakers_per_batch - 1})"
            )
        self.neighbours = None if neighbours is None else neighbours.to(torch.long)
        self.neighbours_epoch = int(state["neighbours_epoch"])


def build_batch_sampler(
    cfg: Config, labels: Sequence[int], rank: int = 0, world_size: int = 1
) -> EpochBatchSampler | HardPrototypeSampler:
    """The batch sampler named by ``cfg.dataset.sampler`` for a dataset with ``labels``.

    ``cfg.train.batch_size`` is the global batch; each of ``world_size`` processes takes its
    share. ``random``: :class:`EpochBatchSampler`; ``hpm``: :class:`HardPrototypeSampler`,
    whose batch ``hpm_seed_speakers * hpm_speakers * hpm_utts`` must equal the batch size.
    """
    d, t = cfg.dataset, cfg.train
    if t.batch_size % world_size:
        raise ValueError(f"train.batch_size {t.batch_size} must divide over {world_size} processes")
    if d.sampler == "random":
        share = t.batch_size // world_size
        return EpochBatchSampler(len(labels), share, t.seed, rank, world_size)
    if d.sampler != "hpm":
        raise ValueError(f"unknown dataset.sampler {d.sampler!r}; valid: {', '.join(SAMPLERS)}")
    per_batch = d.hpm_seed_speakers * d.hpm_speakers * d.hpm_utts
    if per_batch != t.batch_size:
        raise ValueError(
            "hard prototype mining batches hold hpm_seed_speakers * hpm_speakers * hpm_utts = "
            f"{per_batch} utterances; set train.batch_size to that (it is {t.batch_size})"
        )
    if len(labels) < t.batch_size:
        raise ValueError(
            f"batch size {t.batch_size} needs at least that many items ({len(labels)})"
        )
    return HardPrototypeSampler(
        labels,
        num_batches=len(labels) // t.batch_size,
        speakers_per_batch=d.hpm_speakers,
        utts_per_speaker=d.hpm_utts,
        seed_speakers=d.hpm_seed_speakers,
        seed=t.seed,
        rank=rank,
        world_size=world_size,
    )
