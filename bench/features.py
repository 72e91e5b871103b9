"""Benchmark: wildvox Fbank vs kaldi-native-fbank on the same wildmix audio, one CPU thread.

Modes: (a) one utterance at a time for both systems, (b) ours on padded batches (utterances
sorted by length, then cut into batches). Audio is decoded before timing; each timed run covers
the whole set and the median of ``--repeats`` runs is reported (after one warm-up run).
Writes ``<out>/features.json`` and ``<out>/features.md``.

    .venv/bin/python bench/features.py --data ../shared/corpora/wildmix
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import torch
from machine import cpu_name

from wildvox.audio.features import Fbank
from wildvox.audio.io import load_audio

REPO = Path(__file__).resolve().parents[1]
RATE = 16000


def parse_args() -> argparse.Namespace:
    default_data = os.environ.get("WILDVOX_DATA") or str(REPO.parent / "shared/corpora/wildmix")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(default_data), help="wildmix root")
    parser.add_argument("--num-utts", type=int, default=100, help="utterances, evenly spaced")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (median reported)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-mels", type=int, default=80)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")
    if not (args.data / "wav").is_dir():
        parser.error(f"no wildmix corpus at {args.data} (set --data or WILDVOX_DATA)")
    return args


def select_audio(root: Path, count: int) -> tuple[list[str], list[np.ndarray]]:
    """``count`` utterances evenly spaced over the sorted file list (all sources)."""
    files = sorted((root / "wav").rglob("*.opus"))
    picked = files[:: max(1, len(files) // count)][:count]
    return [str(p.relative_to(root / "wav")) for p in picked], [load_audio(p) for p in picked]


def knf_options(n_mels: int) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.frame_opts.samp_freq = RATE
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = n_mels
    return opts


def knf_fbank(opts: knf.FbankOptions, wav: np.ndarray) -> np.ndarray:
    extractor = knf.OnlineFbank(opts)
    extractor.accept_waveform(RATE, wav * 32768.0)
    extractor.input_finished()
    return np.stack([extractor.get_frame(i) for i in range(extractor.num_frames_ready)])


def timings(run: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``repeats`` runs after one warm-up run."""
    run()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def batches(wavs: list[np.ndarray], size: int) -> list[list[np.ndarray]]:
    ordered = sorted(wavs, key=len, reverse=True)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def run_batched(fbank: Fbank, groups: list[list[np.ndarray]]) -> list[torch.Tensor]:
    out = []
    with torch.inference_mode():
        for group in groups:
            tensors = [torch.from_numpy(w) for w in group]
            wave = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
            lengths = torch.tensor([len(w) for w in group])
            out.append(fbank(wave, lengths)[0])
    return out


def run_single(fbank: Fbank, wavs: list[np.ndarray]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [fbank(torch.from_numpy(w).unsqueeze(0))[0] for w in wavs]


def agreement(opts: knf.FbankOptions, fbank: Fbank, wavs: list[np.ndarray]) -> dict[str, float]:
    diffs = [
        np.abs(o[0].numpy() - knf_fbank(opts, w))
        for o, w in zip(run_single(fbank, wavs), wavs, strict=True)
    ]
    return {
        "mean_abs_diff": float(np.mean([d.mean() for d in diffs])),
        "max_abs_diff": float(max(d.max() for d in diffs)),
    }


def markdown(report: dict[str, object], rows: list[dict[str, object]]) -> str:
    lines = [
        "# Feature extraction: wildvox Fbank vs kaldi-native-fbank",
        "",
        f"{report['num_utts']} wildmix utterances, {report['audio_seconds']:.1f} s of audio, "
        f"{report['n_mels']} mel bins, 1 thread, median wall-clock of {report['repeats']} runs "
        f"({report['cpu']}; torch {report['torch']}, kaldi-native-fbank {report['knf']}). "
        f"Batches of {report['batch_size']} sorted by length hold "
        f"{report['padded_seconds']:.1f} s including padding.",
        f"Agreement with kaldi-native-fbank: mean |diff| {report['mean_abs_diff']:.2e}, "
        f"max {report['max_abs_diff']:.2e} (log-energies).",
        "",
        "| system | mode | seconds | CPU seconds | x real-time | ratio to kaldi-native-fbank "
        "(speed-up) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['system']} | {row['mode']} | {row['seconds']:.3f} | "
            f"{row['cpu_seconds']:.3f} | {row['x_real_time']:.0f} | {row['speedup_vs_knf']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    names, wavs = select_audio(args.data, args.num_utts)
    audio_seconds = sum(len(w) for w in wavs) / RATE
    groups = batches(wavs, args.batch_size)
    padded_seconds = sum(len(g) * len(g[0]) for g in groups) / RATE
    opts = knf_options(args.n_mels)
    plain = Fbank(n_mels=args.n_mels, cmn=False)
    with_cmn = Fbank(n_mels=args.n_mels, cmn=True)

    cases: list[tuple[str, str, Callable[[], object]]] = [
        ("kaldi-native-fbank", "per utterance", lambda: [knf_fbank(opts, w) for w in wavs]),
        ("wildvox Fbank", "per utterance", lambda: run_single(plain, wavs)),
        (
            "wildvox Fbank",
            f"batched ({args.batch_size}, padded)",
            lambda: run_batched(plain, groups),
        ),
        (
            "wildvox Fbank + CMN",
            f"batched ({args.batch_size}, padded)",
            lambda: run_batched(with_cmn, groups),
        ),
    ]
    timed = [(system, mode, *timings(run, args.repeats)) for system, mode, run in cases]
    knf_seconds = statistics.median(timed[0][2])
    rows: list[dict[str, object]] = []
    for system, mode, wall, cpu in timed:
        seconds = statistics.median(wall)
        rows.append(
            {
                "system": system,
                "mode": mode,
                "seconds": seconds,
                "cpu_seconds": statistics.median(cpu),
                "x_real_time": audio_seconds / seconds,
                "speedup_vs_knf": knf_seconds / seconds,
                "wall_times": wall,
                "cpu_times": cpu,
            }
        )

    report: dict[str, object] = {
        "num_utts": len(wavs),
        "audio_seconds": audio_seconds,
        "padded_seconds": padded_seconds,
        "n_mels": args.n_mels,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "knf": getattr(knf, "__version__", "unknown"),
        **agreement(opts, plain, wavs),
        "results": rows,
        "utterances": names,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "features.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report, rows)
    (args.out / "features.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
