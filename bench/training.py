"""Benchmark: training throughput (utterances/s) and the data-loading share of the step time.

Runs the real training loop (:class:`wildvox.training.trainer.Trainer`) for ``--warmup +
--steps`` steps of a recipe with batch 128 of 2 s crops and times every step: the wall-clock
time spent waiting for the next batch from the DataLoader (decoding/cropping, online waveform
augmentation, collation; overlapped with compute when ``--workers`` > 0) and the whole step
(data wait + features + SpecAugment + forward/backward + optimiser). Warm-up steps (worker
start-up, allocator growth) are left out. Audio is decoded into memory before the first step
(``dataset.cache_audio``, the trainer's default; one case turns it off); that set-up time is
reported apart.

Default cases on CPU: the papers' recipes at CPU size (in_the_wild stage 1 with ResNet34-SE at
base width 8; IDLab stage 1 with ECAPA-TDNN C=256), with their online augmentation and
SpecAugment, and the first again without augmentation and with every crop decoded from its
Opus file in the worker instead of from memory. ``--device cuda`` runs the recipes at
the papers' size (ResNet34-SE base 32, ECAPA-TDNN C=2048). Without the wildmix corpus
(``--synthetic``) the audio is synthetic, 8 s per utterance.
Writes ``<out>/training.json`` and ``<out>/training.md``.

    .venv/bin/python bench/training.py --data ../shared/corpora/wildmix --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from machine import cpu_name

from wildvox.config import load_config
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.data.manifest import Utterance
from wildvox.training.trainer import StepInfo, Trainer

REPO = Path(__file__).resolve().parents[1]
CPU_SIZE = {
    "in_the_wild/stage1.yaml": ["model.backbone_args={base_channels: 8, layers: [3, 4, 6, 3]}"],
    "idlab/stage1.yaml": [
        "model.backbone_args={channels: 256, num_blocks: 3, se_bottleneck: 64, mfa_channels: 768}"
    ],
}
NO_AUGMENT = ["augment.enabled=false", "augment.specaugment=false"]


@dataclass
class Case:
    name: str
    recipe: str
    overrides: list[str]


@dataclass
class Result:
    name: str
    recipe: str
    params: int
    setup_seconds: float
    step_seconds: list[float] = field(default_factory=list)
    data_seconds: list[float] = field(default_factory=list)

    def summary(self, batch: int) -> dict[str, Any]:
        total = sum(self.step_seconds)
        return {
            "case": self.name,
            "recipe": self.recipe,
            "parameters": self.params,
            "setup_seconds": round(self.setup_seconds, 2),
            "steps": len(self.step_seconds),
            "median_step_seconds": round(statistics.median(self.step_seconds), 3),
            "utterances_per_second": round(batch / statistics.median(self.step_seconds), 2),
            "utterances_per_second_mean": round(batch * len(self.step_seconds) / total, 2),
            "data_share": round(sum(self.data_seconds) / total, 4),
            "step_seconds": [round(s, 3) for s in self.step_seconds],
            "data_seconds": [round(s, 3) for s in self.data_seconds],
        }


def parse_args() -> argparse.Namespace:
    default_data = os.environ.get("WILDVOX_DATA") or str(REPO.parent / "shared/corpora/wildmix")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(default_data), help="wildmix root")
    parser.add_argument("--synthetic", action="store_true", help="synthetic audio, no corpus")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--crop-seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (CUDA only)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if not args.synthetic and not (args.data / "iden_split.txt").is_file():
        parser.error(f"no wildmix corpus at {args.data} (set --data, or use --synthetic)")
    return args


def cases(device: str) -> list[Case]:
    if device == "cpu":
        wild, lab = CPU_SIZE["in_the_wild/stage1.yaml"], CPU_SIZE["idlab/stage1.yaml"]
        return [
            Case("in_the_wild stage 1, ResNet34-SE base 8", "in_the_wild/stage1.yaml", wild),
            Case(
                "in_the_wild stage 1, ResNet34-SE base 8, no augmentation",
                "in_the_wild/stage1.yaml",
                wild + NO_AUGMENT,
            ),
            Case(
                "in_the_wild stage 1, ResNet34-SE base 8, crops decoded from Opus (no cache)",
                "in_the_wild/stage1.yaml",
                [*wild, "dataset.cache_audio=false"],
            ),
            Case("IDLab stage 1, ECAPA-TDNN C=256", "idlab/stage1.yaml", lab),
        ]
    return [
        Case("in_the_wild stage 1, ResNet34-SE base 32 (paper)", "in_the_wild/stage1.yaml", []),
        Case("IDLab stage 1, ECAPA-TDNN C=2048 (paper)", "idlab/stage1.yaml", []),
    ]


def synthetic_corpus(root: Path, count: int, seconds: float = 8.0) -> Path:
    """``count`` noisy harmonic utterances of 32 speakers in VoxCeleb layout + a speaker list."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    lines = []
    for i in range(count):
        speaker = i % 32
        f0 = (90.0 + 6.0 * speaker) * (1 + 0.05 * rng.standard_normal())
        wav = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
        wav = 0.1 * wav + 0.02 * rng.standard_normal(t.size)
        rel = f"s{speaker:02d}/x/{i:05d}.wav"
        (root / "wav" / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / "wav" / rel, wav.astype(np.float32), 16000)
        lines.append(f"s{speaker:02d} {rel}\n")
    (root / "list.txt").write_text("".join(lines))
    return root


def pick_utterances(utts: list[Utterance], count: int) -> list[Utterance]:
    """``count`` utterances spread evenly over the list (so over many speakers)."""
    if len(utts) < count:
        raise SystemExit(f"need {count} training utterances, the corpus has {len(utts)}")
    index = np.linspace(0, len(utts) - 1, count).round().astype(int)
    return [utts[i] for i in index]


def run_case(case: Case, args: argparse.Namespace, data: Path, corpus: str, tmp: Path) -> Result:
    overrides = [
        *case.overrides,
        corpus,
        "train.epochs=1",
        f"train.batch_size={args.batch_size}",
        f"train.num_threads={args.threads}",
        f"train.device={args.device}",
        f"train.precision={args.precision}",
        "train.init_from=",
        f"dataset.crop_seconds={args.crop_seconds}",
        f"dataset.num_workers={args.workers}",
        "augment.rir_bank_size=50",
    ]
    cfg = load_config(REPO / "recipes" / case.recipe, overrides, data_root=str(data))
    needed = (args.warmup + args.steps) * args.batch_size
    utts = pick_utterances(load_corpus(cfg.dataset.train[0]), needed)
    result = Result(case.name, case.recipe, 0, 0.0)
    started = time.perf_counter()

    def on_step(info: StepInfo) -> None:
        if result.setup_seconds == 0.0:
            result.setup_seconds = time.perf_counter() - started - info.step_seconds
        if info.step > args.warmup:
            result.step_seconds.append(info.step_seconds)
            result.data_seconds.append(info.data_seconds)
        print(
            f"  step {info.step}: {info.step_seconds:.2f} s "
            f"(data {info.data_seconds:.2f} s), loss {info.loss:.2f}",
            flush=True,
        )

    trainer = Trainer(cfg, tmp / case.recipe.replace("/", "_"), utts, on_step=on_step)
    result.params = sum(p.numel() for p in trainer.net.parameters())
    trainer.fit()
    return result


def write_markdown(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    lines = [
        "# Training throughput",
        "",
        f"Batch {meta['batch_size']} of {meta['crop_seconds']:g} s crops, {meta['steps']} timed "
        f"steps after {meta['warmup']} warm-up step(s), {meta['threads']} torch thread(s), "
        f"{meta['workers']} DataLoader worker(s), device {meta['device']} ({meta['hardware']}; "
        f"torch {meta['torch']}), {meta['audio']}. Load average before the run: "
        f"{meta['load_average']}. The machine is shared with other jobs, so times vary.",
        "",
        "The data share is the part of the step spent waiting for the next batch: cropping "
        "(and decoding, without the audio cache), online augmentation and collation that the "
        "worker, with 4 batches of prefetch, did not hide behind compute. Utterances/s is the "
        "batch over the median step; the JSON file has every step's times. The augmentation "
        "worker runs on the second core, so its cost shows only where it competes with the "
        "training thread or the other jobs on the machine.",
        "",
        "| case | parameters | median step (s) | utterances/s | data-loading share | set-up (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['parameters'] / 1e6:.2f} M | {r['median_step_seconds']:.2f} | "
            f"{r['utterances_per_second']:.1f} | {100 * r['data_share']:.1f} % | "
            f"{r['setup_seconds']:.1f} |"
        )
    lines += ["", "Command: `" + meta["command"] + "`", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.synthetic:
            data = synthetic_corpus(tmp / "corpus", (args.warmup + args.steps) * args.batch_size)
            corpus = f"dataset.train=[{{root: {data}, list: list.txt}}]"
            audio = "synthetic 8 s utterances"
        else:
            data = args.data.resolve()
            corpus = f"dataset.train=[{{root: {data}, list: iden_split.txt}}]"
            audio = "wildmix iden_split 1 utterances spread over the list"
        results = []
        for case in cases(args.device):
            print(case.name, flush=True)
            results.append(run_case(case, args, data, corpus, tmp).summary(args.batch_size))
    hardware = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    meta = {
        "batch_size": args.batch_size,
        "crop_seconds": args.crop_seconds,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "workers": args.workers,
        "device": args.device,
        "precision": args.precision,
        "hardware": hardware,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "audio": audio,
        "load_average": load,
        "command": "python bench/training.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("data", "out", "synthetic")
        )
        + (" --synthetic" if args.synthetic else ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    (args.out / f"training{suffix}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1) + "\n"
    )
    write_markdown(args.out / f"training{suffix}.md", meta, results)
    for r in results:
        print(
            f"{r['case']}: {r['utterances_per_second']} utt/s, data {100 * r['data_share']:.1f} %"
        )


if __name__ == "__main__":
    main()
