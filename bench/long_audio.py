"""Benchmark: peak memory and time of ``verify`` on long recordings (issue #12.2).

Builds WAV files of real speech (wildmix clips of ``--speakers`` speakers, concatenated and
repeated) of each ``--minutes`` length, 16 kHz mono PCM-16, written in blocks (never held
whole), then verifies each against a short clip of the same speaker with the shipped model in a
fresh process, reading that process' peak RSS (``ru_maxrss``). With ``--whole`` it also runs
the same verify with ``block_seconds`` set past the file length (the whole file decoded and
embedded at once: the behaviour before block-wise inputs), for the lengths in
``--whole-minutes``.

Writes ``<out>/long_audio.json`` and ``<out>/long_audio.md``.

    .venv/bin/python bench/long_audio.py                       # 1, 10, 60 minutes
    .venv/bin/python bench/long_audio.py --minutes 1 10 --whole --whole-minutes 1 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import soundfile as sf
from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
LIMIT_MB = 1024.0

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
import wildvox
m = wildvox.load_model()
m.block_seconds = float(sys.argv[3])
m.max_seconds = 4 * 3600.0
start = time.perf_counter()
v = m.verify(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start, "llr": v.llr, "accept": v.accept,
                  "speech": v.speech[0], "duration": v.durations[0],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("WILDVOX_DATA",
                        REPO.parent / "shared" / "corpora" / "wildmix")))  # fmt: skip
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0])
    parser.add_argument("--whole", action="store_true", help="also without block-wise input")
    parser.add_argument("--whole-minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    return parser.parse_args()


def speech_clips(root: Path) -> tuple[list[Path], Path]:
    """LibriSpeech clips of one wildmix speaker (for the long file) and another of its clips."""
    clips = sorted((root / "wav").glob("ls*/*/*.opus"))
    if len(clips) < 3:
        raise SystemExit(f"{root}: no LibriSpeech clips (ls*/) to build long recordings from")
    by_speaker: dict[str, list[Path]] = {}
    for c in clips:
        by_speaker.setdefault(c.parts[-3], []).append(c)
    own = max(by_speaker.values(), key=len)
    if len(own) < 2:
        raise SystemExit(f"{root}: no LibriSpeech speaker with two clips")
    return own[1:], own[0]


def write_long_wav(path: Path, clips: list[Path], minutes: float) -> None:
    """Concatenate the clips (resampled by wildvox's loader to 16 kHz), repeated, to length."""
    from wildvox.audio.io import load_audio

    pieces = [load_audio(c) for c in clips]
    total = int(minutes * 60 * 16000)
    written = 0
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as out:
        while written < total:
            for p in pieces:
                chunk = p[: total - written]
                out.write(chunk)
                written += len(chunk)
                if written >= total:
                    break


def run_child(long: Path, short: Path, block: float) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(long), str(short), str(block)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Long recordings: peak memory of `verify`",
        "",
        f"Machine: {report['machine']['cpu']}, 1 thread. Command: `{report['command']}`.",
        "",
        "One process per row (model load included in the peak RSS). Block-wise: the file is",
        "decoded and embedded in blocks of about 60 s, the embedding is the duration-weighted",
        "mean of the blocks' (wildvox's default). Whole: the file decoded and embedded at once.",
        "",
        "| input | mode | peak RSS (MB) | under 1 GB | seconds | speech found (s) | LLR |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['minutes']:g} min | {r['mode']} | - | - | - | - | {r['error']} |")
            continue
        lines.append(
            f"| {r['minutes']:g} min | {r['mode']} | {r['peak_rss_mb']:.0f} | "
            f"{'yes' if r['peak_rss_mb'] < LIMIT_MB else 'no'} | {r['seconds']:.1f} | "
            f"{r['speech']:.0f} | {r['llr']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    clips, short = speech_clips(args.data)
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "command": "python bench/long_audio.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "python": platform.python_version()},
        "short_clip": str(short.relative_to(args.data)),
        "rows": rows,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"long_{minutes:g}min.wav"
            started = time.perf_counter()
            write_long_wav(path, clips, minutes)
            print(f"wrote {minutes:g} min in {time.perf_counter() - started:.0f} s", flush=True)
            modes = [("block-wise", 60.0)]
            if args.whole and minutes in args.whole_minutes:
                modes.append(("whole", 1e9))
            for mode, block in modes:
                row = {"minutes": minutes, "mode": mode, **run_child(path, short, block)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "long_audio.json").write_text(json.dumps(report, indent=2))
                (args.out / "long_audio.md").write_text(render(report))
            path.unlink()


if __name__ == "__main__":
    main()
