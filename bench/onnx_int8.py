"""Benchmark: the shipped model's embedder quantised to int8 (ONNX Runtime dynamic
quantisation) against its float32 export, on the same wildmix files (issue #16, item 5).

Both run in ONNX Runtime on 1 thread behind the same features, cohort and scoring
(``wildvox.load_model()``; only the embedder session is swapped). Reported: the agreement of
the two embeddings (cosine per file), EER and MinDCF(0.01) on the full ``veri_test.txt`` with the
shipped AS-Norm scoring and with plain cosine, the model file size, and the CPU seconds per
second of audio of ``model.embed`` one file at a time on a fixed subset (median of
``--repeats`` passes after a warm-up). Writes ``<out>/onnx_int8.json`` and ``.md``::

    OMP_NUM_THREADS=1 .venv/bin/python bench/onnx_int8.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import cpu_name

from wildvox.api import load_model
from wildvox.data.trials import read_trials
from wildvox.inference.onnx_runtime import ONNX_FILE, OnnxEmbedder, quantize_embedder
from wildvox.metrics.verification import compute_eer, compute_min_dcf
from wildvox.scoring.cosine import cosine_score_pairs

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "WILDVOX_DATA", REPO.parent / "shared" / "corpora" / "wildmix")))  # fmt: skip
    parser.add_argument("--subset", type=int, default=150, help="files timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trials = read_trials(args.data / "veri_test.txt")
    files = sorted(set(trials.enroll) | set(trials.test))
    paths = [str(args.data / "wav" / f) for f in files]
    row = {f: i for i, f in enumerate(files)}
    model = load_model(backend="onnx")
    model.min_seconds = 0.1
    fp32 = model.onnx
    assert fp32 is not None
    rows: dict[str, Any] = {}
    embs: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = quantize_embedder(fp32.path, Path(tmp) / "embedder.int8.onnx")
        runners = {"float32": fp32, "int8": OnnxEmbedder(int8_path, threads=1)}
        subset = paths[:: max(1, len(paths) // args.subset)][: args.subset]
        for name, runner in runners.items():
            model.onnx = runner
            embs[name] = model.embed_batch(paths)
            e, t = (embs[name][[row[u] for u in side]] for side in (trials.enroll, trials.test))
            model.embed(subset[0])  # warm-up
            cpu = []
            for _ in range(args.repeats):
                c0 = time.process_time()
                for p in subset:
                    model.embed(p)
                cpu.append(time.process_time() - c0)
            audio = sum(len(model.load(p)) for p in subset) / model.sample_rate
            rows[name] = {
                "file_mb": runner.path.stat().st_size / 2**20,
                "rtf_cpu": statistics.median(cpu) / audio,
                "as_norm": _metrics(model.score(e, t), trials.labels),
                "cosine": _metrics(cosine_score_pairs(e, t), trials.labels),
            }
            print(name, json.dumps(rows[name]), flush=True)
    a, b = embs["float32"], embs["int8"]
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    report = {
        "command": " ".join(["OMP_NUM_THREADS=1 .venv/bin/python bench/onnx_int8.py",
                             *sys.argv[1:]]),
        "machine": {"cpu": cpu_name(), "load_average": os.getloadavg()[0]},
        "files": len(files), "trials": len(trials), "timed_files": len(subset),
        "embedding_cosine": {"mean": float(cos.mean()), "min": float(cos.min())},
        "systems": rows,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_int8.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "onnx_int8.md").write_text(_render(report))
    print(_render(report))
    return 0


def _metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"eer": compute_eer(scores, labels)[0],
            "min_dcf": compute_min_dcf(scores, labels, p_target=0.01)[0]}  # fmt: skip


def _render(r: dict[str, Any]) -> str:
    lines = [
        "# The shipped embedder in int8 (ONNX Runtime dynamic quantisation) vs float32",
        "",
        f"Command: `{r['command']}` ({r['machine']['cpu']}, 1 thread, load average "
        f"{r['machine']['load_average']:.1f}). {r['files']} veri_test files, {r['trials']} "
        f"trials; speed on {r['timed_files']} files one at a time (decoding included). Same "
        f"features, cohort and calibration; only the {ONNX_FILE} session differs.",
        "",
        "| embedder | file MB | CPU s / audio s | EER % AS-Norm | MinDCF0.01 AS-Norm "
        "| EER % cosine | MinDCF0.01 cosine |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in r["systems"].items():
        lines.append(
            f"| {name} | {s['file_mb']:.2f} | {s['rtf_cpu']:.4f} | {100 * s['as_norm']['eer']:.2f} "
            f"| {s['as_norm']['min_dcf']:.3f} | {100 * s['cosine']['eer']:.2f} "
            f"| {s['cosine']['min_dcf']:.3f} |"
        )
    c = r["embedding_cosine"]
    lines += ["", f"Cosine between the float32 and int8 embedding of each file: mean "
              f"{c['mean']:.4f}, min {c['min']:.4f}.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
