"""Benchmark: the command line's startup and batch throughput (issue #15.4).

Every figure is wall-clock seconds of the ``wildvox`` entry point in fresh processes, with
``OMP_NUM_THREADS=1`` (one thread, as the issue's target is stated), the shipped model:

* cold start of ``wildvox --help``, ``wildvox --version`` and a two-file ``wildvox verify``
  (median of ``--repeats`` runs); with ``--baseline REV`` the same for the code of that git
  revision (extracted with ``git archive``, run from a temporary folder);
* batch: ``verify --pairs`` of 200 pairs over ``--files`` wildmix files (each file in two pairs)
  and ``identify --list`` of the same files against a store of 5 enrolled speakers, one
  process each, against ``--calls`` separate ``verify`` / ``identify`` processes whose mean
  time is **extrapolated** to the same number of inputs (labelled as such in the results).

Writes ``<out>/cli.json`` and ``<out>/cli.md``.

    .venv/bin/python bench/cli.py --baseline 568d79d
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
ENROLLED = ["gcast-xandru-osuna", "ls2414", "ls1998", "ls2609", "gche-daniel-mariano"]


def _run(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0, 1)) -> tuple[float, str]:
    """Seconds and stdout of ``cmd`` (exit statuses in ``ok`` accepted: 0/1 are decisions,
    2 from a batch means some inputs failed, which its summary counts)."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stdout


def _summary(stdout: str) -> dict[str, Any]:
    """The last ``--jsonl`` line of a batch: its summary."""
    return dict(json.loads(stdout.splitlines()[-1])["summary"])


def _median(cmd: list[str], env: dict[str, str], repeats: int) -> float:
    """Median seconds of ``repeats`` fresh runs."""
    return statistics.median(_run(cmd, env)[0] for _ in range(repeats))


def _baseline_env(rev: str, tmp: Path, env: dict[str, str]) -> dict[str, str]:
    """The ``src`` of git revision ``rev`` under ``tmp``, on PYTHONPATH."""
    archive = tmp / "src.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "archive", rev, "src"], cwd=REPO, stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / rev, filter="data")
    return {**env, "PYTHONPATH": str(tmp / rev / "src")}


def _startup(wildvox: list[str], env: dict[str, str], pair: list[str], repeats: int) -> dict:
    return {
        "help_s": _median([*wildvox, "--help"], env, repeats),
        "version_s": _median([*wildvox, "--version"], env, repeats)
        if "PYTHONPATH" not in env
        else None,  # the baseline had no --version
        "verify_two_files_s": _median([*wildvox, "verify", *pair], env, repeats),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/corpora/wildmix")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="git revision to compare startup with")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    wildvox = [sys.executable, "-m", "wildvox.cli.main"]
    wav = args.data / "wav"
    veri = (args.data / "veri_test.txt").read_text().split()
    files = list(dict.fromkeys(w for w in veri if w.endswith(".opus")))[: args.files]
    pair = [str(wav / files[0]), str(wav / files[1])]
    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "python": platform.python_version(),
            "threads": 1,
            "load_average_1min_at_start": os.getloadavg()[0],
        },
        "files": len(files),
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result["startup"] = _startup(wildvox, env, pair, args.repeats)
        if args.baseline:
            base_env = _baseline_env(args.baseline, tmp, env)
            result["baseline"] = {"revision": args.baseline,
                                  **_startup(wildvox, base_env, pair, args.repeats)}  # fmt: skip
        pairs = [
            f"{wav / files[i]} {wav / files[(i + 1) % len(files)]}\n" for i in range(len(files))
        ]
        (tmp / "pairs.txt").write_text("".join(pairs))
        (tmp / "list.txt").write_text("".join(f"{wav / f}\n" for f in files))
        store = tmp / "store.sqlite"
        for name in ENROLLED:
            enrol = sorted((wav / name).rglob("*.opus"))[-3:]
            _run([*wildvox, "enroll", name, *map(str, enrol), "--store", str(store)], env)
        batch_verify, out_v = _run([*wildvox, "verify", "--pairs", str(tmp / "pairs.txt"),
                                    "--jsonl"], env, (0, 2))  # fmt: skip
        listed = [*wildvox, "identify", "--list", str(tmp / "list.txt"), "--store", str(store)]
        batch_identify, out_i = _run([*listed, "--jsonl"], env, (0, 1, 2))
        one_verify = [_run([*wildvox, "verify", str(wav / files[i]), str(wav / files[i + 1])],
                           env, (0, 1, 2))[0] for i in range(args.calls)]  # fmt: skip
        one_identify = [_run([*wildvox, "identify", str(wav / files[i]), "--store", str(store)],
                             env, (0, 1, 2))[0] for i in range(args.calls)]  # fmt: skip
    n = len(files)
    result["batch"] = {
        "verify_pairs": {"inputs": n, "one_process_s": batch_verify, "summary": _summary(out_v),
                         "separate_calls_measured": args.calls,
                         "separate_call_mean_s": statistics.mean(one_verify),
                         "separate_calls_extrapolated_s": statistics.mean(one_verify) * n},
        "identify_list": {"inputs": n, "one_process_s": batch_identify,
                          "summary": _summary(out_i),
                          "separate_calls_measured": args.calls,
                          "separate_call_mean_s": statistics.mean(one_identify),
                          "separate_calls_extrapolated_s": statistics.mean(one_identify) * n},
    }  # fmt: skip
    result["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "cli.md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(r: dict[str, Any]) -> str:
    s = r["startup"]
    lines = [
        "# Command line: startup and batch throughput (`bench/cli.py`)",
        "",
        f"CPU: {r['machine']['cpu']}, 1 thread (OMP_NUM_THREADS=1), Python "
        f"{r['machine']['python']}; wall-clock seconds of fresh processes (medians). The machine "
        f"is shared: 1-minute load average {r['machine']['load_average_1min_at_start']:.1f} at "
        f"the start, {r['machine']['load_average_1min_at_end']:.1f} at the end.",
        "",
        "| command | now (s) |" + (" baseline (s) |" if "baseline" in r else ""),
        "|---|---|" + ("---|" if "baseline" in r else ""),
    ]
    for key, label in [("help_s", "`wildvox --help`"), ("version_s", "`wildvox --version`"),
                       ("verify_two_files_s", "`wildvox verify A B` (cold)")]:  # fmt: skip
        row = f"| {label} | {s[key]:.2f} |"
        if "baseline" in r:
            b = r["baseline"][key]
            row += " n/a |" if b is None else f" {b:.2f} |"
        lines.append(row)
    if "baseline" in r:
        lines += ["", f"Baseline: the code of `{r['baseline']['revision']}`."]
    failed = r["batch"]["verify_pairs"]["summary"]["errors"]
    lines += ["", f"Batch over {r['files']} wildmix files (veri_test utterances; {failed} pairs "
              "and the identifications of files under the 0.5 s minimum are answered with an "
              "error, counted in the time):", "",
              "| work | one process (s) | separate calls: mean (s) | separate calls, "
              "extrapolated to all inputs (s) |", "|---|---|---|---|"]  # fmt: skip
    for key, label in [("verify_pairs", "`verify --pairs` (200 pairs)"),
                       ("identify_list", "`identify --list` (5 enrolled)")]:  # fmt: skip
        b = r["batch"][key]
        lines.append(
            f"| {label} | {b['one_process_s']:.1f} | {b['separate_call_mean_s']:.2f} "
            f"(of {b['separate_calls_measured']} measured) | "
            f"{b['separate_calls_extrapolated_s']:.0f} (extrapolated) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
