"""Benchmark: size and CPU cost of every registered backbone at its reference configuration.

For each configuration: parameters of the embedder (backbone + pooling + embedding layer, no
classification head) and their relative difference to the published size where there is one;
multiply-accumulates (MACs) of the embedder for a 2 s input (200 frames of 80 log Mel bins),
counted with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2, convolutions and matrix
products) plus, for ``nn.LSTM`` (which the counter does not see on CPU), ``4 H (I + H)`` MACs per
frame, direction and layer, recorded by forward hooks; the real-time factor on 1 thread (batch
1, 10 s of audio, Fbank features included, median of ``--repeats`` runs after a warm-up run);
the throughput on 2 threads (utterances per second, batch 16 x 2 s, features included). Writes
``<out>/models.json`` and ``<out>/models.md``.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/models.py

(``OMP_WAIT_POLICY=PASSIVE`` keeps idle OpenMP threads from spinning on a busy machine; libgomp
reads it when torch is imported, so it is set in the shell and recorded in the JSON.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from machine import cpu_name
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from wildvox.config import Config
from wildvox.models import Embedder, build_embedder
from wildvox.models.speaker_net import SpeakerNet, build_features
from wildvox.registry import BACKBONES

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
N_MELS = 80


@dataclass(frozen=True)
class Reference:
    """A reference configuration and, where published, its parameter count."""

    name: str
    description: str
    backbone: str
    pooling: str
    embed_dim: int
    backbone_args: dict[str, Any] = field(default_factory=dict)
    published_params: float | None = None
    published_source: str = ""


REFERENCES = (
    Reference(
        "resnet34_se", "ResNet34-SE, base 32, SAP, 256-d", "resnet34_se", "sap", 256,
        {"base_channels": 32}, 6.6e6, "ResNet34 (base 32, 256-d) of WeSpeaker / Chung et al.",
    ),
    Reference(
        "se_resnet34", "SE-ResNet34 (IDLab), base 32, CAS, 256-d", "se_resnet34", "cas", 256,
        {"base_channels": 32},
    ),
    Reference(
        "ecapa_tdnn_c512", "ECAPA-TDNN C=512, CAS, 192-d", "ecapa_tdnn", "cas", 192,
        {"channels": 512}, 6.2e6, "Desplanques et al. 2020, Table 1",
    ),
    Reference(
        "ecapa_tdnn_c1024", "ECAPA-TDNN C=1024, CAS, 192-d", "ecapa_tdnn", "cas", 192,
        {"channels": 1024}, 14.7e6, "Desplanques et al. 2020, Table 1",
    ),
    Reference(
        "las_mha", "LAS-MHA 2x32 CNN, 3x256 BLSTM, 8 heads, TAP, 256-d", "las_mha", "tap", 256,
    ),
    Reference(
        "efficientnet_v2_tiny", "EfficientNetV2 tiny, TAP, 256-d", "efficientnet_v2", "tap", 256,
        {"size": "tiny"},
    ),
    Reference(
        "efficientnet_v2_s", "EfficientNetV2-S, TAP, 256-d", "efficientnet_v2", "tap", 256,
        {"size": "s"},
    ),
)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--only", nargs="*", default=None, help="configuration names to run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")
    known = {r.name for r in REFERENCES}
    if args.only and set(args.only) - known:
        parser.error(f"unknown configuration(s) {sorted(set(args.only) - known)}; known: {known}")
    return args


def count_macs(model: Embedder, feats: torch.Tensor) -> dict[str, int]:
    """MACs of one forward pass: counted ops, plus analytic ones for LSTMs the counter missed."""
    lstm_macs: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.LSTM):

            def hook(mod: nn.Module, inputs: tuple[Any, ...], _: Any, key: str = name) -> None:
                assert isinstance(mod, nn.LSTM)
                x = inputs[0]
                steps = x.shape[0] * x.shape[1]  # batch x frames, batch_first or not
                directions = 2 if mod.bidirectional else 1
                macs, in_dim = 0, mod.input_size
                for _layer in range(mod.num_layers):
                    macs += directions * steps * 4 * mod.hidden_size * (in_dim + mod.hidden_size)
                    in_dim = directions * mod.hidden_size
                lstm_macs[key] = lstm_macs.get(key, 0) + macs

            handles.append(module.register_forward_hook(hook))
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(feats)
    finally:
        for handle in handles:
            handle.remove()
    per_module = counter.get_flop_counts()
    counted_lstm = 0
    missed_lstm = 0
    for name, macs in lstm_macs.items():
        seen = sum(per_module.get(f"{type(model).__name__}.{name}", {}).values()) // 2
        counted_lstm += seen
        missed_lstm += 0 if seen else macs
    counted = counter.get_total_flops() // 2
    return {"total": counted + missed_lstm, "lstm": counted_lstm + missed_lstm}


def timed_runs(run: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` runs after one warm-up run."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def bench_one(ref: Reference, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    embedder = build_embedder(
        N_MELS, ref.backbone, ref.pooling, ref.embed_dim, backbone_args=ref.backbone_args
    ).eval()
    params = sum(p.numel() for p in embedder.parameters())
    macs = count_macs(embedder, torch.randn(1, 200, N_MELS))
    net = SpeakerNet(build_features(Config()), embedder).eval()
    long_wave = 0.1 * torch.randn(1, 10 * RATE)
    batch_wave = 0.1 * torch.randn(16, 2 * RATE)
    with torch.inference_mode():
        torch.set_num_threads(1)
        single = timed_runs(lambda: net(long_wave), repeats)
        torch.set_num_threads(2)
        batched = timed_runs(lambda: net(batch_wave), repeats)
    row: dict[str, Any] = {
        "name": ref.name,
        "description": ref.description,
        "backbone": ref.backbone,
        "backbone_args": ref.backbone_args,
        "pooling": ref.pooling,
        "embed_dim": ref.embed_dim,
        "params": params,
        "published_params": ref.published_params,
        "published_source": ref.published_source,
        "params_rel_diff": (
            None if ref.published_params is None else params / ref.published_params - 1.0
        ),
        "macs_2s": macs["total"],
        "lstm_macs_2s": macs["lstm"],
        "rtf_1thread": statistics.median(single) / 10.0,
        "seconds_10s_1thread": single,
        "utts_per_s_2threads": 16 / statistics.median(batched),
        "seconds_16x2s_2threads": batched,
    }
    return row


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Model zoo: size and CPU cost at the reference configurations",
        "",
        f"{report['cpu']}, {report['cores']} cores; torch {report['torch']}. **The machine was "
        f"shared with other engineers' jobs while this ran** (1-min load average "
        f"{report['load_before'][0]} before, {report['load_after'][0]} after, on "
        f"{report['cores']} cores), so the timings are pessimistic and noisy; the parameter and "
        "MAC counts are exact.",
        "",
        "- params: embedder (backbone + pooling + embedding layer + its BatchNorm), no head.",
        "- MACs: one 2 s input (200 frames x 80 log Mel bins), embedder only: convolutions and "
        "matrix products counted by `FlopCounterMode` (FLOPs / 2); LSTMs, which it does not see "
        "on CPU, as 4H(I+H) per frame, direction and layer (forward hooks).",
        f"- RTF: seconds per second of audio on 1 thread, batch 1 x 10 s, Fbank features "
        f"included, median of {report['repeats']} runs after a warm-up (min-max in brackets).",
        "- throughput: utterances per second on 2 threads, batch 16 x 2 s, features included, "
        f"median of {report['repeats']} runs.",
        "",
        "| model | params (M) | published (M) | rel. diff | GMACs / 2 s | RTF 1 thread "
        "| utt/s 2 threads |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["models"]:
        published = row["published_params"]
        pub = "-" if published is None else f"{published / 1e6:.1f}"
        diff = "-" if row["params_rel_diff"] is None else f"{100 * row['params_rel_diff']:+.1f} %"
        single = row["seconds_10s_1thread"]
        lines.append(
            f"| {row['description']} | {row['params'] / 1e6:.2f} | {pub} | {diff} | "
            f"{row['macs_2s'] / 1e9:.2f} | {row['rtf_1thread']:.4f} "
            f"({min(single) / 10:.4f}-{max(single) / 10:.4f}) | "
            f"{row['utts_per_s_2threads']:.1f} |"
        )
    sources = [
        f"{r['description']}: {r['published_source']}"
        for r in report["models"]
        if r["published_source"]
    ]
    if sources:
        lines += ["", "Published sizes: " + "; ".join(sources) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    missing = sorted(set(BACKBONES.names()) - {r.backbone for r in REFERENCES})
    if missing:
        raise SystemExit(f"no reference configuration in bench/models.py for: {missing}")
    selected = [r for r in REFERENCES if not args.only or r.name in args.only]
    load_before = load_average()
    rows = []
    for ref in selected:
        row = bench_one(ref, args.repeats)
        print(
            f"{ref.name}: {row['params'] / 1e6:.2f} M params, {row['macs_2s'] / 1e9:.2f} GMACs, "
            f"RTF {row['rtf_1thread']:.4f}, {row['utts_per_s_2threads']:.1f} utt/s",
            flush=True,
        )
        rows.append(row)
    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "shared_machine": True,
        "load_before": load_before,
        "load_after": load_average(),
        "repeats": args.repeats,
        "n_mels": N_MELS,
        "models": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "models.md").write_text(markdown(report))
    print(f"wrote {args.out / 'models.json'} and {args.out / 'models.md'}")


if __name__ == "__main__":
    main()
