"""Benchmark: verification under degraded test conditions, ours against Resemblyzer (#14.1).

Every condition of :func:`wildvox.augment.degrade.standard_conditions` (clean; telephone with
G.711 mu-law and with GSM 06.10; Opus 8 kbit/s and MP3 32 kbit/s; coloured noise and babble at
10, 5 and 0 dB SNR; simulated rooms at RT60 0.3, 0.6 and 0.9 s; crops to 1, 2 and 4 s; 12 dB of
overdrive into hard clipping) is applied to every file of a seeded subset of wildmix
``veri_test.txt``, then scored twice: degraded test side against clean enrolment ("test"), and
degraded on both sides ("both"). The degraded audio (float WAV) and both systems' embeddings are
cached under ``--cache`` (default ``runs/robustness/seed<S>``), keyed by condition; a re-run
only scores. Each file's degradation is seeded by (seed, condition, file id).

Babble is made of 5 utterances of training-corpus speakers (wildmix ``dev_list.txt`` speakers
not in ``veri_test.txt``, and ``wildextra``); the script refuses a pool holding a test speaker.

Systems, all from the same files in the same run:

- **ours (as shipped)**: ``wildvox.load_model()``, ``model.embed_batch``, ``model.score``
  (AS-Norm against the shipped cohort), LLRs from ``model.calibration.llr(scores, dur_a, dur_b)``
  (durations of the audio actually scored, so crops shorten them); EER, MinDCF(0.01), Cllr and
  actual DCF(0.01) of those LLRs, and the false-accept (FA) / false-reject (FR) rates at the
  shipped thresholds ``model.calibration.threshold(point)``.
- **ours (cosine)** and **Resemblyzer (cosine)**: cosine scores have no calibration, so there is
  no Cllr or actual DCF; their thresholds for ``far=1%``, ``far=0.1%`` and ``eer`` are set on
  this run's clean condition (so the clean row meets them by construction) and kept fixed for
  every other condition, which shows how far a threshold drifts when the conditions change.

Trials: by default a seeded subset of about ``--trials-max`` = 1500 trials (all of them with
``--trials-max 0``). Measured on a shared 2-core machine: 600 trials (261 files) took 14 min at a
load average of 7, 1500 trials (428 files) 8.7 min from an empty cache at load 1-3; at load 9
the peer slowed to ~0.4 s a file, which would put 1500 trials near an hour (use 600 then).
For every speaker the same share of its files is kept, trials between kept files are kept, and if
still too many, trials are drawn within (enrolment speaker, label) groups; every speaker and
both classes remain. Writes ``robustness.{json,md,png}`` to ``--out``::

    OMP_NUM_THREADS=1 .venv/bin/python bench/robustness.py            # default subset, seed 0
    OMP_NUM_THREADS=1 .venv/bin/python bench/robustness.py --trials-max 0   # every trial
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import queue
import shlex
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from inference import PEER_PYTHON, REPO, default_data, display_path, resolve_model, run_peer

from wildvox.api import SpeakerModel, load_model
from wildvox.augment.degrade import Degrade, condition_rng, standard_conditions
from wildvox.augment.noise import read_audio
from wildvox.data.files import atomic_write
from wildvox.data.trials import Trials, read_trials
from wildvox.metrics.verification import compute_eer, compute_min_dcf, llr_metrics
from wildvox.scoring.cosine import cosine_score_pairs

logger = logging.getLogger("bench.robustness")

SAMPLE_RATE = 16000
POINTS = ("far=1%", "far=0.1%", "eer")
SYSTEMS = ("ours", "ours-cosine", "resemblyzer")
LABELS = {
    "ours": "ours (AS-Norm + calibration, as shipped)",
    "ours-cosine": "ours (cosine)",
    "resemblyzer": "Resemblyzer (cosine)",
}
SIDES = ("test", "both")


# ---------------------------------------------------------------------------- data
def speaker(utt: str) -> str:
    """Speaker id of a wildmix / wildextra utterance id (``<speaker>/<session>/<file>``)."""
    return utt.split("/", 1)[0]


def select_trials(trials: Trials, max_trials: int, seed: int) -> Trials:
    """A seeded subset of about ``max_trials`` trials (all when 0 or more than there are).

    The same share of every speaker's files is kept (at least 2 per speaker), trials with both
    sides kept survive; if still over ``max_trials`` they are drawn within (enrolment speaker,
    label) groups, at least one per group. Fewer files keep the degradation and embedding cost
    down: a trial subset drawn directly would still touch almost every file.
    """
    labels = np.asarray(trials.labels)
    if max_trials <= 0 or max_trials >= len(labels):
        return trials
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for utt in sorted(set(trials.enroll) | set(trials.test)):
        by_speaker[speaker(utt)].append(utt)
    share = min(1.0, math.sqrt(max_trials / len(labels)))
    kept: set[str] = set()
    for utts in by_speaker.values():
        n = max(2, math.ceil(share * len(utts)))
        kept.update(utts[i] for i in rng.permutation(len(utts))[:n])
    idx = [i for i, (e, t) in enumerate(zip(trials.enroll, trials.test, strict=True))
           if e in kept and t in kept]  # fmt: skip
    if len(idx) > max_trials:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i in idx:
            groups[(speaker(trials.enroll[i]), int(labels[i]))].append(i)
        frac = max_trials / len(idx)
        idx = sorted(
            int(j)
            for g in groups.values()
            for j in rng.choice(g, size=max(1, round(frac * len(g))), replace=False)
        )
    return Trials(
        enroll=[trials.enroll[i] for i in idx],
        test=[trials.test[i] for i in idx],
        labels=labels[idx],
    )


def training_files(data: Path, extra: Path | None, test_speakers: set[str]) -> list[Path]:
    """Audio of training-corpus speakers: wildmix ``dev_list.txt`` speakers that are not in
    ``test_speakers``, and every ``wildextra`` speaker (also never a test speaker)."""
    files: list[Path] = []
    for root in (data, extra):
        if root is None or not (root / "dev_list.txt").is_file():
            continue
        for line in (root / "dev_list.txt").read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] not in test_speakers:
                files.append(root / "wav" / fields[1])
    return files


def babble_pool(files: list[Path], count: int, seed: int, test_speakers: set[str]) -> list[Any]:
    """``count`` seeded training utterances (waveforms) for babble; refuses a test speaker."""
    rng = np.random.default_rng([seed, 1])
    chosen = [files[int(i)] for i in sorted(rng.choice(len(files), size=count, replace=False))]
    leaked = sorted({p.parts[-3] for p in chosen} & test_speakers)
    if leaked:
        raise RuntimeError(f"babble pool holds test speakers {leaked}")
    return [read_audio(p, SAMPLE_RATE) for p in chosen]


# ---------------------------------------------------------------------------- conditions
def degrade_files(
    name: str, degrade: Degrade, files: list[str], wav_root: Path, cache: Path, seed: int
) -> dict[str, float]:
    """Write ``<cache>/wav/<name>/<file>.wav`` (float WAV) for each file under one condition,
    unless a complete earlier run left them (``<cache>/<name>.done.json``); the durations (s)
    of the outputs."""
    done = cache / f"{name}.done.json"
    if done.is_file():
        record = json.loads(done.read_text(encoding="utf-8"))
        if record["files"] == files and record["seed"] == seed:
            return dict(zip(files, record["durations"], strict=True))
    t0 = time.perf_counter()
    durations = []
    for f in files:
        wav = read_audio(wav_root / f, SAMPLE_RATE)
        y = degrade(wav, condition_rng(seed, name, f))
        target = cache / "wav" / name / f"{f}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(target), y, SAMPLE_RATE, subtype="FLOAT")
        durations.append(len(y) / SAMPLE_RATE)
    record = {"files": files, "seed": seed, "durations": durations}
    atomic_write(done, json.dumps(record))
    logger.info("%s: degraded %d files in %.0f s", name, len(files), time.perf_counter() - t0)
    return dict(zip(files, durations, strict=True))


def embed_ours(model: SpeakerModel, paths: list[str], cache: Path) -> np.ndarray:
    """Our embeddings (N, D) of ``paths``, cached in ``cache`` (.npz) per model and file list."""
    if cache.is_file():
        with np.load(cache) as npz:
            if str(npz["model_id"]) == model.model_id and list(npz["paths"]) == paths:
                return np.asarray(npz["embeddings"])
    emb = model.embed_batch(paths, batch_size=16)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, embeddings=emb, paths=np.array(paths), model_id=model.model_id)
    return emb


class PeerWorker:
    """Resemblyzer in a background thread: conditions are submitted as their audio is ready and
    embedded by ``bench/inference.run_peer`` (a subprocess), every waiting degraded condition
    in one call (one model load), so the peer runs while we degrade and embed the next ones.
    Results are cached as ``<cache>/emb/<condition>-resemblyzer.npz`` (files order)."""

    def __init__(self, peer_python: Path, data: Path, cache: Path, files: list[str]) -> None:
        self.peer_python, self.data, self.cache, self.files = peer_python, data, cache, files
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def path(self, name: str) -> Path:
        return self.cache / "emb" / f"{name}-resemblyzer.npz"

    def submit(self, name: str) -> None:
        if not self.path(name).is_file():
            self.queue.put(name)

    def _embed(self, names: list[str], root: Path, ids: list[str]) -> None:
        with tempfile.TemporaryDirectory(dir=self.cache) as tmp:
            arrays = run_peer(self.peer_python, root, ids, 1, 1, Path(tmp), "peer")
        row = {str(i): k for k, i in enumerate(arrays["ids"])}
        n = len(self.files)
        for k, name in enumerate(names):
            take = [row[i] for i in ids[k * n : (k + 1) * n]]
            self.path(name).parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                self.path(name),
                embeddings=arrays["embeddings"][take],
                files=np.array(self.files),
                vad_fallback=arrays["vad_fallback"][take],
            )

    def _run(self) -> None:
        closing = False
        while not closing:
            batch = [self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            closing = None in batch
            names = [n for n in batch if n is not None]
            try:
                if "clean" in names:
                    self._embed(["clean"], self.data, self.files)
                degraded = [n for n in names if n != "clean"]
                if degraded:
                    ids = [f"{n}/{f}.wav" for n in degraded for f in self.files]
                    t0 = time.perf_counter()
                    self._embed(degraded, self.cache, ids)
                    logger.info("Resemblyzer: %s in %.0f s", ", ".join(degraded),
                                time.perf_counter() - t0)  # fmt: skip
            except BaseException as exc:  # reported by result()
                self.error = exc
                return

    def result(self, name: str) -> tuple[np.ndarray, int]:
        """Embeddings (N, 256) of a condition and its count of VAD fallbacks (after close)."""
        with np.load(self.path(name)) as npz:
            if list(npz["files"]) != self.files:
                raise RuntimeError(f"{self.path(name)} holds other files; remove it")
            return np.asarray(npz["embeddings"]), int(npz["vad_fallback"].sum())

    def close(self) -> None:
        """Wait for every submitted condition; re-raise a failure of the thread."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"Resemblyzer worker failed: {self.error}") from self.error


# ---------------------------------------------------------------------------- metrics
def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """False-accept and false-reject rates (fractions) of accepting ``scores >= threshold``."""
    y = labels.astype(bool)
    return {
        "fa": float(np.mean(scores[~y] >= threshold)),
        "fr": float(np.mean(scores[y] < threshold)),
        "threshold": float(threshold),
    }


def clean_thresholds(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Score thresholds of an uncalibrated system set on the clean condition: the ``far=X%``
    points accept X % of its non-target trials, ``eer`` is its EER threshold."""
    non = np.sort(scores[~labels.astype(bool)])
    out = {}
    for point, far in (("far=1%", 0.01), ("far=0.1%", 0.001)):
        k = max(1, math.ceil((1.0 - far) * len(non)))  # accept the top len(non) - k
        out[point] = float(np.nextafter(non[k - 1], np.inf))
    out["eer"] = compute_eer(scores, labels)[1]
    return out


def system_metrics(
    scores: np.ndarray, labels: np.ndarray, thresholds: dict[str, float], llr: bool
) -> dict[str, Any]:
    """EER, MinDCF(0.01) and the FA/FR at each point; with ``llr``, also Cllr, min Cllr and
    actual DCF(0.01) (the scores are then calibrated LLRs)."""
    if llr:
        m = llr_metrics(scores, labels)
        out: dict[str, Any] = {
            "eer": m["eer"],
            "min_dcf": m["min_dcf_0.01"],
            "cllr": m["cllr"],
            "min_cllr": m["min_cllr"],
            "act_dcf": m["act_dcf_0.01"],
        }
    else:
        out = {
            "eer": compute_eer(scores, labels)[0],
            "min_dcf": compute_min_dcf(scores, labels, p_target=0.01)[0],
        }
    out["points"] = {p: rates(scores, labels, thresholds[p]) for p in POINTS}
    return out


# ---------------------------------------------------------------------------- report
def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render_markdown(result: dict[str, Any]) -> str:
    """The results table and its reading."""
    sub = result["trials"]
    lines = [
        "# Robustness: verification under degraded conditions (wildmix veri_test)",
        "",
        f"{sub['count']} trials ({sub['targets']} targets) of `veri_test.txt` between "
        f"{sub['files']} files of all {sub['speakers']} test speakers (seed {result['seed']}; "
        f"`--trials-max {result['trials_max']}`). Sides: `test` = degraded test side against "
        "clean enrolment, `both` = both sides degraded. Systems: **ours** = the shipped model "
        "as a user gets it (AS-Norm, duration-aware calibration; EER/MinDCF of its LLRs; "
        "FA/FR at its shipped thresholds), **cos** = ours with plain cosine, **Rz** = "
        "Resemblyzer with cosine. cos and Rz have no calibration: no Cllr/actDCF, and their "
        "far=1%, far=0.1% and eer thresholds were set on this run's clean trials (so the clean "
        "row meets them by construction) and then kept for every condition.",
        "",
        "| condition | sides | EER % ours / cos / Rz | MinDCF0.01 ours / cos / Rz | Cllr ours "
        "| actDCF0.01 ours | FA/FR % @far=1% ours | cos | Rz | FA/FR % @far=0.1% ours | cos "
        "| Rz | FA/FR % @eer ours | cos | Rz |",
        "|---|---|---|---|---:|---:|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per_side in result["conditions"].items():
        for side, systems in per_side.items():
            o = systems["ours"]
            cells = [
                " / ".join(pct(systems[s]["eer"]) for s in SYSTEMS),
                " / ".join(f"{systems[s]['min_dcf']:.3f}" for s in SYSTEMS),
                f"{o['cllr']:.3f}",
                f"{o['act_dcf']:.3f}",
            ]
            for point in POINTS:
                for s in SYSTEMS:
                    r = systems[s]["points"][point]
                    cells.append(f"{pct(r['fa'])} / {pct(r['fr'])}")
            lines.append(f"| {name} | {side} | " + " | ".join(cells) + " |")
    non = sub["count"] - sub["targets"]
    se = 100 * math.sqrt(0.2 * 0.8 / min(sub["targets"], non))
    lines += [
        "",
        f"Resolution: one false accept among the {non} non-target trials is {100 / non:.2f} % "
        f"(so far=0.1% cannot be resolved here); the binomial standard error of a 20 % EER "
        f"with {min(sub['targets'], non)} trials of the smaller class is about {se:.1f} points.",
        "",
        *result["summary"],
        "",
        result["provenance"],
        "",
    ]
    return "\n".join(lines)


def summarise(result: dict[str, Any]) -> list[str]:
    """Sentences on the far=1% promise and the EER gap to Resemblyzer, from the numbers."""
    kept: list[str] = []
    broken: list[str] = []
    wins: list[str] = []
    losses: list[str] = []
    for name, per_side in result["conditions"].items():
        for side, systems in per_side.items():
            key = f"{name} ({side})"
            fa = systems["ours"]["points"]["far=1%"]["fa"]
            (kept if 0.005 <= fa <= 0.02 else broken).append(f"{key} {pct(fa)} %")
            gap = 100 * (systems["ours"]["eer"] - systems["resemblyzer"]["eer"])
            (wins if gap < 0 else losses).append(f"{key} {gap:+.1f}")
    n = len(kept) + len(broken)
    return [
        f"- far=1% (ours, shipped threshold) keeps its false accepts within 0.5-2 % on "
        f"{len(kept)} of {n} condition/side rows: " + (", ".join(kept) or "none") + ".",
        "- Outside that band: " + (", ".join(broken) or "none") + ".",
        f"- EER of ours (as shipped) below Resemblyzer's on {len(wins)} of {n} rows "
        "(points, ours - Rz): " + (", ".join(wins) or "none") + ".",
        "- Not below: " + (", ".join(losses) or "none") + ".",
    ]


def plot(result: dict[str, Any], path: Path) -> None:
    """EER and FA@far=1% per condition (rows) for each side (columns), all three systems."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = result["conditions"]
    names = list(conds)
    fig, axes = plt.subplots(2, 2, figsize=(16, 9), sharex=True)
    x = np.arange(len(names))
    width = 0.27
    for col, side in enumerate(SIDES):
        for row, (what, label) in enumerate((("eer", "EER %"), ("fa", "FA % at far=1%"))):
            ax = axes[row, col]
            for k, s in enumerate(SYSTEMS):
                res = [
                    result["conditions"][n].get(side, result["conditions"][n]["test"])[s]
                    for n in names
                ]
                vals = [100 * (r["eer"] if what == "eer" else r["points"]["far=1%"]["fa"])
                        for r in res]  # fmt: skip
                ax.bar(x + (k - 1) * width, vals, width, label=LABELS[s])
            if what == "fa":
                ax.axhspan(0.5, 2.0, color="green", alpha=0.12, label="0.5-2 % band")
                ax.set_yscale("symlog", linthresh=1.0)  # linear below 1 %: 0 % stays visible
                ax.set_ylim(0.0, 100.0)
            ax.set_ylabel(label)
            ax.set_title(f"{label}, {side} side{'s' if side == 'both' else ''} degraded")
            ax.grid(axis="y", alpha=0.3)
            ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    handles, labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=9)
    fig.text(0.5, 0.005, "clean appears in both columns with its test-side row (nothing "
             "degraded); cos and Rz thresholds set on this run's clean trials", ha="center",
             fontsize=8)  # fmt: skip
    fig.tight_layout(rect=(0.0, 0.02, 1.0, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="wildmix folder")
    parser.add_argument("--extra", type=Path, default=None, help="wildextra (training speech)")
    parser.add_argument("--model", type=Path, default=None, help="exported model folder")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--trials-max", type=int, default=1500, help="0: every trial")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--babble-files", type=int, default=200, help="babble pool size")
    parser.add_argument("--conditions", nargs="*", default=None, help="names (default: all)")
    parser.add_argument("--min-seconds", type=float, default=0.1, help="shortest clip accepted")
    parser.add_argument("--cache", type=Path, default=None, help="default runs/robustness/seedS")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results")
    parser.add_argument(
        "--render", type=Path, default=None, help="only redraw the table and PNG from this JSON"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        stored = json.loads(args.render.read_text(encoding="utf-8"))
        (args.out / "robustness.md").write_text(render_markdown(stored))
        plot(stored, args.out / "robustness.png")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    wall0, cpu0, load_start = time.perf_counter(), time.process_time(), os.getloadavg()
    extra = args.extra or args.data.parent / "wildextra"
    cache = args.cache or REPO / "runs/robustness" / f"seed{args.seed}"
    if not args.peer_python.is_file():
        parser.error(f"{args.peer_python} not found: run `make peer-env` first")

    all_trials = read_trials(args.data / "veri_test.txt")
    trials = select_trials(all_trials, args.trials_max, args.seed)
    labels = np.asarray(trials.labels)
    files = sorted(set(trials.enroll) | set(trials.test))
    test_speakers = {speaker(u) for u in all_trials.enroll + all_trials.test}
    logger.info("%d trials, %d files, %d speakers", len(labels), len(files),
                len({speaker(f) for f in files}))  # fmt: skip
    pool = babble_pool(
        training_files(args.data, extra if extra.is_dir() else None, test_speakers),
        args.babble_files, args.seed, test_speakers,
    )  # fmt: skip
    conditions = standard_conditions(pool, rir_seed=args.seed)
    names = args.conditions or list(conditions)
    unknown = sorted(set(names) - set(conditions))
    if unknown or names[0] != "clean":
        parser.error(f"conditions must start with clean and be among {', '.join(conditions)}")

    model = load_model(resolve_model(args.model))
    model.min_seconds = args.min_seconds
    model.set_threads(1)
    if model.calibration is None or model.cohort is None:
        parser.error("the model must ship a cohort and a calibration")
    wav_root = args.data / "wav"
    clean_dur = {f: sf.info(str(wav_root / f)).duration for f in files}
    row = {f: i for i, f in enumerate(files)}
    e_idx = np.array([row[u] for u in trials.enroll])
    t_idx = np.array([row[u] for u in trials.test])

    embeddings: dict[str, dict[str, np.ndarray]] = {}
    durations: dict[str, np.ndarray] = {}
    timing: dict[str, float] = {}
    vad_fallback: dict[str, int] = {}
    cache.mkdir(parents=True, exist_ok=True)
    peer = PeerWorker(args.peer_python, args.data, cache, files)
    for name in names:
        t0 = time.perf_counter()
        if name == "clean":
            dur = clean_dur
            paths = [str(wav_root / f) for f in files]
        else:
            dur = degrade_files(name, conditions[name], files, wav_root, cache, args.seed)
            paths = [str(cache / "wav" / name / f"{f}.wav") for f in files]
        peer.submit(name)
        embeddings[name] = {"ours": embed_ours(model, paths, cache / "emb" / f"{name}-ours.npz")}
        durations[name] = np.array([dur[f] for f in files])
        timing[name] = time.perf_counter() - t0
        logger.info("%s: degraded and embedded by ours in %.0f s", name, timing[name])
    t0 = time.perf_counter()
    peer.close()
    logger.info("waited %.0f s for Resemblyzer", time.perf_counter() - t0)
    for name in names:
        embeddings[name]["resemblyzer"], vad_fallback[name] = peer.result(name)

    cal = model.calibration
    shipped = {p: cal.threshold(p) for p in POINTS}
    results: dict[str, Any] = {}
    fixed: dict[str, dict[str, float]] = {}
    for name in names:
        results[name] = {}
        for side in SIDES:
            enroll_cond = name if side == "both" else "clean"
            if side == "both" and name == "clean":
                continue
            de, dt = durations[enroll_cond][e_idx], durations[name][t_idx]
            per: dict[str, Any] = {}
            for system in SYSTEMS:
                key = "resemblyzer" if system == "resemblyzer" else "ours"
                ea = embeddings[enroll_cond][key][e_idx]
                tb = embeddings[name][key][t_idx]
                if system == "ours":
                    llr = cal.llr(model.score(ea, tb), de, dt)
                    per[system] = system_metrics(llr, labels, shipped, llr=True)
                    continue
                scores = cosine_score_pairs(ea, tb)
                if name == "clean":
                    fixed[system] = clean_thresholds(scores, labels)
                per[system] = system_metrics(scores, labels, fixed[system], llr=False)
            results[name][side] = per
        logger.info("%s: EER ours %.3f, Rz %.3f", name, results[name]["test"]["ours"]["eer"],
                    results[name]["test"]["resemblyzer"]["eer"])  # fmt: skip

    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/robustness.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    load_end = os.getloadavg()
    result: dict[str, Any] = {
        "command": command.strip(),
        "seed": args.seed,
        "trials_max": args.trials_max,
        "trials": {
            "count": len(labels),
            "targets": int(labels.sum()),
            "files": len(files),
            "speakers": len({speaker(f) for f in files}),
            "of_veri_test": len(all_trials.labels),
            "clean_audio_seconds": float(sum(clean_dur.values())),
        },
        "model": {
            "path": display_path(resolve_model(args.model)),
            "id": model.model_id,
            "calibration": cal.fitted_on,
            "shipped_thresholds": shipped,
        },
        "cosine_thresholds_from_clean": fixed,
        "babble": {
            "pool_files": len(pool),
            "talkers": 5,
            "source": "wildmix dev_list speakers not in veri_test, and wildextra",
        },
        "resemblyzer_vad_fallback_files": vad_fallback,
        "seconds_per_condition_ours": timing,
        "conditions": results,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": load_end,
            "wall_seconds": time.perf_counter() - wall0,
            "cpu_seconds_main_process": time.process_time() - cpu0,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        },
    }
    result["summary"] = summarise(result)
    m = result["machine"]
    result["provenance"] = (
        f"Command: `{result['command']}` ({m['date_utc']} UTC, {m['wall_seconds'] / 60:.1f} min "
        f"wall; {m['cpus']} CPUs shared with other jobs, 1-min load average "
        f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end). Model `{result['model']['id']}`"
        f", calibration fitted on {cal.fitted_on}. Babble: 5 talkers from a pool of {len(pool)} "
        "training-corpus utterances (no veri_test speaker). Degraded audio and embeddings are "
        "cached under runs/robustness/."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robustness.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "robustness.md").write_text(render_markdown(result))
    plot(result, args.out / "robustness.png")
    for line in result["summary"]:
        logger.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
