"""The training loop: random crops -> features -> embedder -> margin head -> cross-entropy.

One checkpoint (``checkpoints/last.pt``) is written at the end of every epoch, and every
``checkpoint_every_steps`` steps when set; each holds the weights, optimiser, schedule position,
the resolved config and the speaker map, so ``resume`` continues exactly where a killed run
stopped (the data order is a function of the seed and epoch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from wildvox.config import Config, dump_config
from wildvox.data.dataset import AudioBank, CropDataset, EpochBatchSampler, collate_crops
from wildvox.data.manifest import SpeakerMap, Utterance
from wildvox.inference.extract import extract_embeddings
from wildvox.inference.model_io import export_model
from wildvox.models.heads import build_head
from wildvox.models.speaker_net import SpeakerNet, build_speaker_net
from wildvox.training.checkpoint import load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    seconds: float
    val_top1: float | None = None


@dataclass
class StepInfo:
    epoch: int
    step: int
    batch: int
    batches: int
    loss: float
    accuracy: float


@dataclass
class TrainResult:
    model_dir: Path
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.train_utts = list(train)
        self.speakers = SpeakerMap.from_labels(u.speaker for u in self.train_utts)
        self.val_utts = [u for u in val if u.speaker in self.speakers][: cfg.train.val_max_utts]
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.device = resolve_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        self.net: SpeakerNet = build_speaker_net(cfg).to(self.device)
        self.head: nn.Module = build_head(
            cfg.head.name,
            embed_dim=cfg.model.embed_dim,
            num_classes=len(self.speakers),
            margin=cfg.head.margin,
            scale=cfg.head.scale,
            args=cfg.head.args,
        ).to(self.device)
        t = cfg.train
        params = [
            {"params": self.net.parameters(), "weight_decay": t.weight_decay},
            {"params": self.head.parameters(), "weight_decay": t.weight_decay},
        ]
        if t.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=t.lr)
        elif t.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=t.lr, momentum=0.9, nesterov=True)
        else:
            raise ValueError(f"unknown optimizer {t.optimizer!r}; valid: adam, sgd")
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.history: list[EpochStats] = []
        self.train_seconds = 0.0

    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.pt"

    def _state(self) -> dict[str, object]:
        return {
            "net": self.net.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "config": dump_config(self.cfg),
            "speakers": self.speakers.labels,
            "history": [vars(h) for h in self.history],
        }

    def save(self) -> None:
        save_checkpoint(self.ckpt_path, self._state())

    def restore(self, path: Path | None = None) -> None:
        state = load_checkpoint(path or self.ckpt_path)
        if list(state["speakers"]) != self.speakers.labels:
            raise ValueError(f"{path or self.ckpt_path}: checkpoint speaker map differs from data")
        self.net.load_state_dict(state["net"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.history = [EpochStats(**h) for h in state["history"]]
        logger.info("resumed at epoch %d, batch %d", self.epoch + 1, self.batch_in_epoch)

    def _loader(self, dataset: CropDataset, sampler: EpochBatchSampler) -> DataLoader[object]:
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

    def _dataset(self) -> CropDataset:
        d, f = self.cfg.dataset, self.cfg.features
        bank = None
        if d.cache_audio:
            bank = AudioBank.decode(
                [str(u.path) for u in self.train_utts], f.sample_rate, d.min_seconds, num_workers=2
            )
        labels = [self.speakers.index(u.speaker) for u in self.train_utts]
        return CropDataset(
            self.train_utts,
            labels,
            crop_seconds=d.crop_seconds,
            sample_rate=f.sample_rate,
            seed=self.cfg.train.seed,
            bank=bank,
            min_seconds=d.min_seconds,
        )

    def validate(self) -> float | None:
        """Top-1 of the head's closed-set decision on the validation utterances."""
        if not self.val_utts:
            return None
        e = self.cfg.eval
        ext = extract_embeddings(
            self.net,
            [str(u.path) for u in self.val_utts],
            sample_rate=self.cfg.features.sample_rate,
            batch_seconds=e.batch_seconds,
            max_seconds=e.max_seconds,
            min_seconds=self.cfg.dataset.min_seconds,
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
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.yaml").write_text(dump_config(self.cfg))
        dataset = self._dataset()
        sampler = EpochBatchSampler(len(dataset), t.batch_size, seed=t.seed)
        while self.epoch < t.epochs:
            sampler.set_epoch(self.epoch, self.batch_in_epoch)
            self._run_epoch(self._loader(dataset, sampler), sampler)
        model_dir = self.out_dir / "model"
        export_model(
            model_dir,
            self.net,
            self.cfg,
            self.speakers.labels,
            head_state=self.head.state_dict(),
            extra={"train_seconds": self.train_seconds, "epochs": t.epochs},
        )
        return TrainResult(model_dir, self.history, self.train_seconds)

    def _run_epoch(self, loader: DataLoader[object], sampler: EpochBatchSampler) -> None:
        t = self.cfg.train
        self.net.train()
        self.head.train()
        start = time.perf_counter()
        total_loss = total_correct = total_items = 0.0
        batches = sampler.global_batches()
        for wavs, labels in loader:
            wavs, labels = wavs.to(self.device), labels.to(self.device)
            emb = self.net(wavs)
            logits = self.head(emb, labels)
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip > 0:
                params = list(self.net.parameters()) + list(self.head.parameters())
                nn.utils.clip_grad_norm_(params, t.grad_clip)
            self.optimizer.step()
            self.step += 1
            self.batch_in_epoch += 1
            correct = float((logits.argmax(1) == labels).sum())
            total_loss += float(loss.detach()) * len(labels)
            total_correct += correct
            total_items += len(labels)
            if self.on_step is not None:
                info = StepInfo(
                    self.epoch, self.step, self.batch_in_epoch, batches, float(loss),
                    correct / len(labels),
                )  # fmt: skip
                self.on_step(info)
            if t.checkpoint_every_steps and self.step % t.checkpoint_every_steps == 0:
                self.train_seconds += time.perf_counter() - start
                start = time.perf_counter()
                self.save()
        self.train_seconds += time.perf_counter() - start
        seconds = time.perf_counter() - start
        stats = EpochStats(
            epoch=self.epoch + 1,
            loss=total_loss / max(total_items, 1),
            accuracy=total_correct / max(total_items, 1),
            seconds=seconds,
            val_top1=self.validate(),
        )
        self.history.append(stats)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.save()
        logger.info(
            "epoch %d: loss %.3f acc %.3f %.0fs val top-1 %s",
            stats.epoch, stats.loss, stats.accuracy, stats.seconds,
            "n/a" if stats.val_top1 is None else f"{stats.val_top1:.3f}",
        )  # fmt: skip
        if self.on_epoch is not None:
            self.on_epoch(stats)
