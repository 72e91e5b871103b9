"""Benchmark: exact EER/MinDCF on 10 M trials (vs scikit-learn) and AS-Norm at VoxCeleb sizes.

1. Metrics: ``verification_report`` (EER + MinDCF at p 0.01 and 0.05 from one sort) against
   the same three numbers from ``sklearn.metrics.roc_curve`` (``drop_intermediate=False``), in
   the same run, on 10 M synthetic trials (10 % targets) with continuous and with heavily tied
   scores; median of ``--repeats`` runs after a warm-up run; the largest difference between
   the two is recorded.
2. AS-Norm (top-100, cohort 5,994 x 256, float32 embeddings), each size in its own subprocess
   so its peak memory is its own: Vox1-O (4,708 utterances, 37,720 trials) and Vox1-H
   (137,000 utterances, 550,000 trials). Reported: median seconds of ``--repeats`` runs of the
   whole normalisation (cohort statistics once per utterance + the formula), the process peak
   RSS (``VmHWM``: interpreter, numpy/torch/sklearn imports, inputs and work buffers), its
   growth over the resident size once the inputs exist, and tracemalloc's peak inside one
   ``asnorm`` call.

Targets: 10 M trials < 5 s, Vox1-O AS-Norm < 2 s, Vox1-H < 60 s and < 4 GB.
Writes ``<out>/scoring.json`` and ``<out>/scoring.md``.

    .venv/bin/python bench/scoring.py                 # all, ~3-5 minutes on 2 busy cores
    .venv/bin/python bench/scoring.py --trials 1000000 --skip-vox1-h
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from machine import cpu_name
from sklearn.metrics import roc_curve
from threadpoolctl import threadpool_limits

from wildvox.metrics.verification import verification_report
from wildvox.scoring.asnorm import asnorm

REPO = Path(__file__).resolve().parents[1]
SIZES = {
    "vox1-o": {"utterances": 4708, "trials": 37720},
    "vox1-h": {"utterances": 137_000, "trials": 550_000},
}
COHORT, DIM, TOP_N = 5994, 256, 100
TARGETS = {"metrics_10m_s": 5.0, "vox1-o_s": 2.0, "vox1-h_s": 60.0, "vox1-h_gb": 4.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--blas-threads", type=int, default=1, help="numpy BLAS threads")
    parser.add_argument("--skip-vox1-h", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--asnorm-case", choices=sorted(SIZES), help=argparse.SUPPRESS)
    return parser.parse_args()


def timed(run: Callable[[], Any], repeats: int) -> tuple[list[float], list[float], Any]:
    """Wall and CPU seconds of ``repeats`` runs after one untimed warm-up run."""
    walls, cpus, result = [], [], run()
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, result


def sklearn_report(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """EER (ROC crossing, linear interpolation) and MinDCF from sklearn's ROC points."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    d = fnr - fpr
    i = int(np.flatnonzero(d >= 0)[-1])
    a = 0.0 if d[i] == 0 else d[i] / (d[i] - d[i + 1])
    out = {"eer": float(fpr[i] + a * (fpr[i + 1] - fpr[i]))}
    for p in (0.01, 0.05):
        out[f"min_dcf_{p}"] = float(np.min(p * fnr + (1 - p) * fpr) / min(p, 1 - p))
    return out


def bench_metrics(n: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    labels = (rng.random(n) < 0.1).astype(np.int8)
    continuous = rng.normal(size=n) + 2.5 * labels
    rows = []
    for name, scores in (("continuous", continuous), ("tied (3 decimals)", continuous.round(3))):
        ours_w, ours_c, ours = timed(lambda s=scores: verification_report(s, labels), repeats)
        sk_w, sk_c, ref = timed(lambda s=scores: sklearn_report(s, labels), repeats)
        rows.append(
            {
                "scores": name,
                "trials": n,
                "distinct_scores": int(np.unique(scores).size),
                "ours_s": statistics.median(ours_w),
                "ours_cpu_s": statistics.median(ours_c),
                "sklearn_s": statistics.median(sk_w),
                "sklearn_cpu_s": statistics.median(sk_c),
                "ours_runs_s": ours_w,
                "sklearn_runs_s": sk_w,
                "ours": ours,
                "sklearn": ref,
                "max_abs_diff": max(abs(ours[k] - ref[k]) for k in ours),
            }
        )
        r = rows[-1]
        print(f"metrics {name}: ours {r['ours_s']:.2f} s, sklearn {r['sklearn_s']:.2f} s")
    return rows


def rss_bytes(field: str = "VmHWM") -> int:
    """This process's peak (``VmHWM``) or current (``VmRSS``) resident memory. ``VmHWM`` is
    reset by exec, unlike ``ru_maxrss`` (Linux carries that over from the forking parent),
    which is only the fallback."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def asnorm_case(case: str, repeats: int) -> dict[str, Any]:
    """One AS-Norm size, run inside its own process."""
    size = SIZES[case]
    rng = np.random.default_rng(1)
    utts = rng.normal(size=(size["utterances"], DIM)).astype(np.float32)
    cohort = rng.normal(size=(COHORT, DIM)).astype(np.float32)
    e_idx = rng.integers(0, size["utterances"], size["trials"])
    t_idx = rng.integers(0, size["utterances"], size["trials"])
    scores = rng.uniform(-0.2, 0.9, size["trials"])
    base_rss = rss_bytes("VmRSS")  # inputs in memory, temporaries of their creation freed

    def run() -> np.ndarray:
        return asnorm(scores, utts, utts, cohort, TOP_N, enroll_index=e_idx, test_index=t_idx)

    walls, cpus, out = timed(run, repeats)
    peak_rss = rss_bytes()
    tracemalloc.start()
    run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.isfinite(out).all()
    return {
        "case": case,
        **size,
        "cohort": COHORT,
        "dim": DIM,
        "top_n": TOP_N,
        "seconds": statistics.median(walls),
        "cpu_seconds": statistics.median(cpus),
        "runs_s": walls,
        "peak_rss_bytes": peak_rss,
        "rss_growth_bytes": peak_rss - base_rss,
        "traced_peak_bytes": traced_peak,
        "input_bytes": utts.nbytes + cohort.nbytes + scores.nbytes + e_idx.nbytes + t_idx.nbytes,
    }


def run_case_subprocess(case: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--asnorm-case",
        case,
        "--repeats",
        str(args.repeats),
        "--blas-threads",
        str(args.blas_threads),
    ]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    peak = gib(result["peak_rss_bytes"])
    print(f"asnorm {case}: {result['seconds']:.2f} s, peak RSS {peak} GiB")
    return result


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Scoring: exact metrics and AS-Norm",
        "",
        f"{env['cpu']}, {env['cpu_count']} cores, load average {env['load_average']} at start "
        f"(shared machine); numpy {env['numpy']} with {env['blas_threads']} BLAS thread(s), "
        f"scikit-learn {env['sklearn']}, torch threads {env['torch_threads']}. "
        f"Medians of {report['repeats']} runs.",
        "",
        "## EER + MinDCF (0.01, 0.05), ours vs sklearn `roc_curve`",
        "",
        "| scores | trials | distinct | ours s (CPU s) | sklearn s (CPU s) | speed-up "
        "| max abs diff | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["metrics"]:
        ok = "met" if r["ours_s"] < TARGETS["metrics_10m_s"] else "missed"
        lines.append(
            f"| {r['scores']} | {r['trials']:,} | {r['distinct_scores']:,} "
            f"| {r['ours_s']:.2f} ({r['ours_cpu_s']:.2f}) "
            f"| {r['sklearn_s']:.2f} ({r['sklearn_cpu_s']:.2f}) "
            f"| {r['sklearn_s'] / r['ours_s']:.1f}x | {r['max_abs_diff']:.1e} "
            f"| < {TARGETS['metrics_10m_s']:g} s: {ok} |"
        )
    lines += [
        "",
        f"## AS-Norm (top-{TOP_N}, cohort {COHORT:,} x {DIM}, float32)",
        "",
        "| size | utterances | trials | seconds (CPU s) | peak RSS GiB | RSS growth GiB "
        "| tracemalloc peak GiB | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["asnorm"]:
        limit = TARGETS[f"{r['case']}_s"]
        ok = r["seconds"] < limit
        target = f"< {limit:g} s"
        if r["case"] == "vox1-h":
            ok = ok and r["peak_rss_bytes"] < TARGETS["vox1-h_gb"] * 1e9
            target += f", < {TARGETS['vox1-h_gb']:g} GB"
        lines.append(
            f"| {r['case']} | {r['utterances']:,} | {r['trials']:,} "
            f"| {r['seconds']:.2f} ({r['cpu_seconds']:.2f}) | {gib(r['peak_rss_bytes'])} "
            f"| {gib(r['rss_growth_bytes'])} | {gib(r['traced_peak_bytes'])} "
            f"| {target}: {'met' if ok else 'missed'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        if args.asnorm_case:
            print(json.dumps(asnorm_case(args.asnorm_case, args.repeats)))
            return
        load = os.getloadavg()
        metrics = bench_metrics(args.trials, args.repeats)
    cases = ["vox1-o"] + ([] if args.skip_vox1_h else ["vox1-h"])
    report = {
        "repeats": args.repeats,
        "environment": {
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "load_average": [round(v, 2) for v in load],
            "python": platform.python_version(),
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "blas_threads": args.blas_threads,
            "torch_threads": torch.get_num_threads(),
        },
        "targets": TARGETS,
        "metrics": metrics,
        "asnorm": [run_case_subprocess(case, args) for case in cases],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scoring.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "scoring.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
