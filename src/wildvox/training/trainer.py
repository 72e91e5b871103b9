"""The training loop: random crops (+ augmentation) -> features (+ SpecAugment) -> embedder ->
margin head -> cross-entropy.

One checkpoint (``checkpoints/last.pt``) is written at the end of every epoch, and every
``checkpoint_every_steps`` steps when set; each holds the weights, optimiser, grad scaler, the
schedules' last values, the SpecAugment generator, the hard-prototype sampler's neighbour table,
the resolved config and the speaker map, so ``resume`` continues exactly where a killed run
stopped (the data order and the waveform augmentation are functions of the seed, epoch and
item; the LR and margin are functions of the step).

In a distributed run (torchrun, see :mod:`wildvox.training.distributed`) every process trains a
DistributedDataParallel copy on its share of each global batch of ``train.batch_size``; rank 0
validates, logs, checkpoints and exports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from wildvox.augment.chain import AugmentChain, Augmenter, build_spec_augment
from wildvox.augment.reverb import load_or_create_rir_bank
from wildvox.config import Config, dump_config
from wildvox.data.dataset import (
    AudioBank,
    CropDataset,
    EpochBatchSampler,
    TrainingBabble,
    collate_crops,
)
from wildvox.data.files import atomic_write
from wildvox.data.manifest import SpeakerMap, Utterance
from wildvox.data.samplers import HardPrototypeSampler, build_batch_sampler
from wildvox.inference.extract import extract_embeddings
from wildvox.inference.model_io import export_model
from wildvox.models.heads import build_head
from wildvox.models.speaker_net import SpeakerNet, build_speaker_net
from wildvox.training import distributed as dist
from wildvox.training.averaging import export_average, read_weights, save_epoch_checkpoint
from wildvox.training.checkpoint import load_checkpoint, save_checkpoint
from wildvox.training.distill import load_teacher, relational_distill_loss
from wildvox.training.schedulers import build_lr_schedule, build_margin_schedule, build_optimizer

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BatchSampler = EpochBatchSampler | HardPrototypeSampler


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    seconds: float
    val_top1: float | None = None


@dataclass
class StepInfo:
    """One optimiser step: position, loss and accuracy on this rank's share of the batch, and
    wall-clock seconds spent waiting for the batch (``data_seconds``) and on the whole step."""

    epoch: int
    step: int
    batch: int
    batches: int
    loss: float
    accuracy: float
    data_seconds: float = 0.0
    step_seconds: float = 0.0


@dataclass
class TrainResult:
    model_dir: Path
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0


def checkpoint_path(run_dir: Path) -> Path:
    """The checkpoint a run in ``run_dir`` resumes from (``--resume``)."""
    return run_dir / "checkpoints" / "last.pt"


class Trainer:
    """Trains a :class:`SpeakerNet` and a margin head on ``train`` utterances.

    ``val`` utterances whose speaker is in the training map give a per-epoch validation top-1
    (closed-set classification by the head's class prototypes).
    """

    def __init__(
        self,
        cfg: Config,
        out_dir: Path,
        train: Sequence[Utterance],
        val: Sequence[Utterance] = (),
        on_step: Callable[[StepInfo], None] | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
    ) -> None:
        t = cfg.train
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.train_utts = list(train)
        self.speakers = SpeakerMap.from_labels(u.speaker for u in self.train_utts)
        self.val_utts = [u for u in val if u.speaker in self.speakers][: t.val_max_utts]
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.dist = ctx = dist.DistContext.current()
        self.labels = [self.speakers.index(u.speaker) for u in self.train_utts]
        self.sampler = build_batch_sampler(cfg, self.labels, ctx.rank, ctx.world_size)
        self.device = dist.resolve_device(t.device, self.dist)
        self.amp_dtype = PRECISIONS[t.precision] if self.device.type == "cuda" else None
        if t.precision != "fp32" and self.amp_dtype is None:
            logger.info("mixed precision is CUDA-only: training in fp32 on %s", self.device)
        torch.manual_seed(t.seed)
        self.net: SpeakerNet = build_speaker_net(cfg)
        self.head: nn.Module = build_head(
            cfg.head.name,
            embed_dim=cfg.model.embed_dim,
            num_classes=len(self.speakers),
            margin=cfg.head.margin,
            scale=cfg.head.scale,
            args=cfg.head.args,
        )
        if t.init_from:
            self.load_initial_weights(Path(t.init_from))
        if self.dist.distributed and t.sync_batchnorm:
            self.net = cast(SpeakerNet, dist.convert_batchnorm(self.net, self.device.type))
        self.net.to(self.device)
        self.head.to(self.device)
        model = dist.EmbedAndClassify(self.net.embedder, self.head)
        self.model = dist.wrap_model(model, self.dist, self.device)
        self.optimizer = build_optimizer(t, self.net, self.head)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.lr_schedule = build_lr_schedule(t.lr_scheduler, t.lr, t.lr_scheduler_args)
        self.margin_schedule = build_margin_schedule(
            t.margin_scheduler, cfg.head.margin, cfg.head.scale, t.margin_scheduler_args
        )
        self.spec = build_spec_augment(cfg.augment)
        self.teacher: Tensor | None = None
        self.teacher_known: Tensor | None = None
        if t.distill_weight > 0:  # the config makes sure distill_teacher is set
            table, known = load_teacher(Path(t.distill_teacher), self.train_utts)
            self.teacher = torch.from_numpy(table).to(self.device)
            self.teacher_known = torch.from_numpy(known).to(self.device)
        self.spec_generator = torch.Generator(device=self.device).manual_seed(t.seed)
        self.sampler_state: dict[str, Any] | None = None
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.history: list[EpochStats] = []
        self.train_seconds = 0.0

    @property
    def ckpt_path(self) -> Path:
        return checkpoint_path(self.out_dir)

    def load_initial_weights(self, path: Path) -> None:
        """Start from the network and head of a checkpoint or exported model (a new stage)."""
        weights = read_weights(path)
        if weights.speakers != self.speakers.labels:
            raise ValueError(
                f"{path}: its head has {len(weights.speakers)} speakers, the training data "
                f"{len(self.speakers)}, or their labels differ; a fine-tuning stage must train "
                "on the speakers of the stage it starts from"
            )
        try:
            self.net.load_state_dict(weights.net)
            self.head.load_state_dict(weights.head)
        except RuntimeError as exc:
            raise ValueError(f"{path}: weights do not fit this recipe's model ({exc})") from exc
        logger.info("initialised the network and head from %s", path)

    def _state(self) -> dict[str, object]:
        sampler = self.sampler
        return {
            "net": self.net.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "margin_schedule": self.margin_schedule.state_dict(),
            "spec_generator": self.spec_generator.get_state(),
            "sampler": sampler.state_dict() if isinstance(sampler, HardPrototypeSampler) else {},
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "config": dump_config(self.cfg),
            "speakers": self.speakers.labels,
            "history": [vars(h) for h in self.history],
        }

    def save(self) -> None:
        """Write ``last.pt`` (rank 0 only)."""
        if self.dist.is_main:
            save_checkpoint(self.ckpt_path, self._state())

    def restore(self, path: Path | None = None) -> None:
        state = load_checkpoint(path or self.ckpt_path)
        if list(state["speakers"]) != self.speakers.labels:
            raise ValueError(f"{path or self.ckpt_path}: checkpoint speaker map differs from data")
        self.net.load_state_dict(state["net"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state.get("scaler", {}))
        if "lr_schedule" in state:
            self.lr_schedule.load_state_dict(state["lr_schedule"])
            self.margin_schedule.load_state_dict(state["margin_schedule"])
        if "spec_generator" in state:
            self.spec_generator.set_state(state["spec_generator"])
        self.sampler_state = state.get("sampler") or None
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.history = [EpochStats(**h) for h in state["history"]]
        logger.info("resumed at epoch %d, batch %d", self.epoch + 1, self.batch_in_epoch)

    def _loader(self, dataset: CropDataset, sampler: BatchSampler) -> DataLoader[object]:
        workers = self.cfg.dataset.num_workers
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=collate_crops,
            pin_memory=self.device.type == "cuda",
            multiprocessing_context="fork" if workers > 0 else None,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _augmenter(self, bank: AudioBank | None) -> Augmenter | None:
        """The online waveform augmentation chain (None when ``augment.enabled`` is off)."""
        a, sample_rate = self.cfg.augment, self.cfg.features.sample_rate
        if not a.enabled:
            return None
        if a.reverb > 0 and a.rir_dir is None:  # simulate the RIR bank once, before workers
            a = dataclasses.replace(a, rir_bank=a.rir_bank or str(self.out_dir / "rir_bank.npz"))
            if self.dist.is_main:
                load_or_create_rir_bank(str(a.rir_bank), a.rir_bank_size, a.rir_seed, sample_rate)
            dist.barrier()
        speech = a.noise_dir is not None and (Path(a.noise_dir) / "speech").is_dir()
        babble = None
        if a.babble > 0 and not speech:
            babble = TrainingBabble(bank, [str(u.path) for u in self.train_utts], sample_rate)
        return AugmentChain(a, babble_pool=babble, sample_rate=sample_rate)

    def _dataset(self) -> CropDataset:
        d, f = self.cfg.dataset, self.cfg.features
        bank = None
        if d.cache_audio:
            bank = AudioBank.decode(
                [str(u.path) for u in self.train_utts], f.sample_rate, d.min_seconds, num_workers=2
            )
        return CropDataset(
            self.train_utts,
            self.labels,
            crop_seconds=d.crop_seconds,
            sample_rate=f.sample_rate,
            seed=self.cfg.train.seed,
            bank=bank,
            augment=self._augmenter(bank),
            min_seconds=d.min_seconds,
        )

    def _start_epoch(self, sampler: BatchSampler) -> None:
        sampler.set_epoch(self.epoch, self.batch_in_epoch)
        if isinstance(sampler, HardPrototypeSampler):
            saved = self.sampler_state
            if self.batch_in_epoch > 0 and saved and saved["neighbours_epoch"] == self.epoch:
                sampler.load_state_dict(saved)  # mid-epoch resume: the epoch's own table
            else:
                with torch.no_grad():
                    sampler.update_prototypes(cast(Any, self.head).prototypes())
            self.sampler_state = None

    def validate(self) -> float | None:
        """Top-1 of the head's closed-set decision on the validation utterances."""
        if not self.val_utts:
            return None
        ext = extract_embeddings(
            self.net,
            [str(u.path) for u in self.val_utts],
            self.cfg,
            num_workers=0,
            device=self.device,
        )
        labels = np.array([self.speakers.index(self.val_utts[i].speaker) for i in ext.ok])
        self.head.eval()
        with torch.inference_mode():
            logits = self.head(torch.from_numpy(ext.embeddings).to(self.device))
        return float((logits.argmax(1).cpu().numpy() == labels).mean())

    def fit(self, resume: bool = False) -> TrainResult:
        t = self.cfg.train
        if t.num_threads > 0:
            torch.set_num_threads(t.num_threads)
        if resume and self.ckpt_path.is_file():
            self.restore()
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out_dir / "config.yaml", dump_config(self.cfg))
        dataset = self._dataset()
        sampler = self.sampler
        while self.epoch < t.epochs:
            self._start_epoch(sampler)
            self._run_epoch(self._loader(dataset, sampler), len(sampler) + sampler.start_batch)
        model_dir = self.out_dir / "model"
        if self.dist.is_main:
            extra = {"train_seconds": self.train_seconds, "epochs": t.epochs}
            if t.average_last > 0:
                export_average(self.ckpt_path.parent, t.average_last, model_dir, extra)
            else:
                head_state = self.head.state_dict()
                export_model(model_dir, self.net, self.cfg, self.speakers.labels, head_state, extra)
        dist.barrier()
        return TrainResult(model_dir, self.history, self.train_seconds)

    def _distill_loss(self, embeddings: Tensor, indices: Tensor) -> Tensor | None:
        """The relational distillation loss on the crops whose utterance the teacher knows."""
        if self.teacher is None or self.teacher_known is None:
            return None
        keep = self.teacher_known[indices]
        return relational_distill_loss(embeddings[keep], self.teacher[indices[keep]])

    def _train_step(self, wavs: Tensor, labels: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
        """One update on a batch ``wavs (b, N)``, ``labels (b,)`` of utterances ``indices``;
        returns (loss, logits)."""
        t = self.cfg.train
        self.lr_schedule.apply(self.optimizer, self.step)
        self.margin_schedule.apply(self.head, self.step)
        with torch.no_grad():
            feats, _ = self.net.features(wavs, None)
            if self.spec is not None:
                feats = dist.shard_spec_augment(self.spec, feats, self.spec_generator, self.dist)
        counts = getattr(self.head, "center_counts", None)
        before = counts.clone() if self.dist.distributed and counts is not None else None
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits, embeddings = self.model(feats, labels)
        loss = F.cross_entropy(logits.float(), labels)
        distill = self._distill_loss(embeddings, indices)
        if distill is not None:
            loss = loss + t.distill_weight * distill
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = list(self.net.parameters()) + list(self.head.parameters())
            nn.utils.clip_grad_norm_(params, t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if counts is not None and before is not None:
            dist.sync_increments(counts, before)
        return loss.detach(), logits.detach()

    def _run_epoch(self, loader: DataLoader[object], batches: int) -> None:
        t = self.cfg.train
        self.net.train()
        self.head.train()
        start = epoch_start = time.perf_counter()  # start: since the last checkpoint
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, items (this rank)
        tick = time.perf_counter()
        for wavs, labels, indices in loader:
            fetched = time.perf_counter()
            wavs, labels = wavs.to(self.device), labels.to(self.device)
            loss, logits = self._train_step(wavs, labels, indices.to(self.device))
            self.step += 1
            self.batch_in_epoch += 1
            correct = float((logits.argmax(1) == labels).sum())  # waits for the device
            totals += torch.tensor([float(loss) * len(labels), correct, len(labels)])
            if self.on_step is not None and self.dist.is_main:
                done = time.perf_counter()
                info = StepInfo(
                    self.epoch, self.step, self.batch_in_epoch, batches, float(loss),
                    correct / len(labels), fetched - tick, done - tick,
                )  # fmt: skip
                self.on_step(info)
            if t.checkpoint_every_steps and self.step % t.checkpoint_every_steps == 0:
                self.train_seconds += time.perf_counter() - start
                start = time.perf_counter()
                self.save()
            tick = time.perf_counter()
        self.train_seconds += time.perf_counter() - start
        seconds = time.perf_counter() - epoch_start  # the whole epoch, checkpoints included
        dist.all_reduce_sum(totals)
        stats = EpochStats(
            epoch=self.epoch + 1,
            loss=float(totals[0] / totals[2].clamp_min(1)),
            accuracy=float(totals[1] / totals[2].clamp_min(1)),
            seconds=seconds,
            val_top1=self.validate() if self.dist.is_main else None,
        )
        self.history.append(stats)
        self.epoch += 1
        self.batch_in_epoch = 0
        if not self.dist.is_main:
            return
        keep = max(t.keep_epoch_checkpoints, t.average_last)
        save_epoch_checkpoint(self.ckpt_path, self.epoch, self._state(), keep)
        logger.info(
            "epoch %d: loss %.3f acc %.3f %.0fs val top-1 %s",
            stats.epoch, stats.loss, stats.accuracy, stats.seconds,
            "n/a" if stats.val_top1 is None else f"{stats.val_top1:.3f}",
        )  # fmt: skip
        if self.on_epoch is not None:
            self.on_epoch(stats)
