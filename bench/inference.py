"""Benchmark: embedding cost and verification accuracy of our model against Resemblyzer.

On the same wildmix files, in one run:

- **Cost**: the real-time factor (RTF = CPU seconds per second of audio, file decoding included;
  lower is better) of embedding a fixed subset of ``veri_test.txt`` utterances (``--subset``,
  default 300, chosen with ``--seed``), on 1 and 2 threads, median of ``--repeats`` passes after an
  untimed warm-up call. Ours is loaded with ``wildvox.api.load_model`` and timed two ways: one file
  at a time (``model.embed``, like Resemblyzer's ``embed_utterance``) and in length-sorted batches
  (``model.embed_batch``). Resemblyzer (GE2E d-vector, read + VAD + embed) runs in its own venv
  (``make peer-env``) through ``bench/peers/resemblyzer_embed.py``, as a subprocess. Wall-clock
  RTFs are recorded too; on a shared machine they mostly measure the other jobs.
- **Accuracy**: EER and MinDCF (p_target 0.01, c_miss = c_fa = 1) on the full ``veri_test.txt``:
  cosine scores of each system's embeddings, and each system as a user gets it: ours scores
  with the AS-Norm cohort it ships (when it has one), Resemblyzer with plain cosine. With
  ``--peer-cohort-npz`` (Resemblyzer embeddings of training files, ids
  ``<corpus>/<speaker>/...``) Resemblyzer is also scored with AS-Norm against a cohort of its
  own per-speaker means (top 100), our backend lent to the peer.

Writes ``<out>/inference.json`` (every number, every pass) and ``<out>/inference.md``::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/inference.py       # model: the shipped one
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/inference.py --model runs/default/model \
        --peer-veri-npz runs/teacher/resemblyzer_veri.npz            # reuse the peer's veri pass

On a busy machine idle OpenMP threads spin and inflate the 2-thread CPU times;
``OMP_WAIT_POLICY=PASSIVE`` (read when torch is imported; recorded in the JSON and passed on to
the peer subprocess) reduces that for both systems alike.

The model defaults to the first of ``src/wildvox/pretrained/default`` and ``runs/default/model``
that exists. Our product API refuses clips under 0.5 s; ``--min-seconds`` (default 0.1) lowers that
here so that every trial of ``veri_test.txt`` (shortest clip 0.29 s) is scored by both systems.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from wildvox.api import SpeakerModel, load_model
from wildvox.data.corpora.voxceleb import read_meta
from wildvox.data.trials import read_trials
from wildvox.metrics.verification import compute_eer, compute_min_dcf
from wildvox.reports.generalization import (
    cosine_matrix,
    subset_metrics,
    trial_subsets,
    unseen_identification,
)
from wildvox.scoring.asnorm import make_cohort
from wildvox.scoring.cohort import ScoreCohort
from wildvox.scoring.cosine import cosine_score_pairs

logger = logging.getLogger("bench.inference")

REPO = Path(__file__).resolve().parents[1]
MODEL_CANDIDATES = (REPO / "src/wildvox/pretrained/default", REPO / "runs/default/model")
PEER_PYTHON = REPO / ".venv-peer/bin/python"
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (T, D), (T, D) -> (T,) trial scores
PEER_SCRIPT = REPO / "bench/peers/resemblyzer_embed.py"
P_TARGET = 0.01


def resolve_model(path: Path | None) -> Path:
    """The model folder: ``path`` if given, else the first existing default candidate.

    Raises:
        FileNotFoundError: ``path`` has no ``model.json``, or no candidate exists.
    """
    candidates = (path,) if path is not None else MODEL_CANDIDATES
    for candidate in candidates:
        if candidate is not None and (candidate / "model.json").is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no exported wildvox model found (tried {tried}); pass --model DIR")


def display_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (results stay machine-independent)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)


def default_data() -> Path:
    """``$WILDVOX_DATA``, else ``../shared/corpora/wildmix`` beside the repository."""
    env = os.environ.get("WILDVOX_DATA")
    return Path(env) if env else REPO.parent / "shared" / "corpora" / "wildmix"


def pick_subset(files: Sequence[str], size: int, seed: int) -> list[str]:
    """A fixed random subset of ``size`` files (all of them when fewer), in sorted order."""
    ordered = sorted(set(files))
    if size >= len(ordered):
        return ordered
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ordered), size=size, replace=False)
    return [ordered[i] for i in sorted(chosen)]


def trial_metrics(
    ids: Sequence[str],
    embeddings: np.ndarray,
    enroll: Sequence[str],
    test: Sequence[str],
    labels: np.ndarray,
    score: Scorer = cosine_score_pairs,
) -> dict[str, float]:
    """EER and MinDCF(0.01) of trial scores (cosine unless ``score`` says otherwise).

    Args:
        ids: (N,) utterance ids of ``embeddings``.
        embeddings: (N, D) float embeddings (need not be normalised).
        enroll, test: (T,) trial sides, ids among ``ids``.
        labels: (T,) 1 target / 0 non-target.
        score: ``(T, D), (T, D) -> (T,)`` scores of the enrolment and test sides.

    Returns:
        ``{"eer": fraction, "min_dcf": normalised cost, "trials": T}``.

    Raises:
        KeyError: a trial names an utterance without an embedding.
    """
    row = {utt: i for i, utt in enumerate(ids)}
    missing = sorted({u for u in (*enroll, *test) if u not in row})
    if missing:
        raise KeyError(f"{len(missing)} trial utterances have no embedding, e.g. {missing[:3]}")
    scores = score(embeddings[[row[u] for u in enroll]], embeddings[[row[u] for u in test]])
    eer, _ = compute_eer(scores, labels)
    min_dcf, _ = compute_min_dcf(scores, labels, p_target=P_TARGET)
    return {"eer": eer, "min_dcf": min_dcf, "trials": len(labels)}


def peer_asnorm(cohort_npz: Path, top_n: int = 100) -> ScoreCohort:
    """AS-Norm scoring for the peer: a cohort of per-speaker means of its embeddings of
    training files (ids ``<corpus>/<speaker>/<session>/<file>``)."""
    with np.load(cohort_npz) as npz:
        ids, emb = [str(i) for i in npz["ids"]], npz["embeddings"]
    speakers = np.array(["/".join(i.split("/")[:2]) for i in ids])
    cohort = ScoreCohort.from_embeddings(make_cohort(emb, speakers), top_n)
    logger.info("peer cohort: %d speakers from %s", len(cohort.embeddings), cohort_npz)
    return cohort


def timed_passes(run: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """CPU and wall seconds of each of ``repeats`` calls of ``run``."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


def rtf_record(cpu: list[float], wall: list[float], audio_seconds: float) -> dict[str, Any]:
    """Medians and per-pass values of CPU and wall RTF (seconds per second of audio)."""
    return {
        "rtf_cpu": statistics.median(cpu) / audio_seconds,
        "rtf_wall": statistics.median(wall) / audio_seconds,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    }


def time_ours(
    model: SpeakerModel, paths: list[str], threads: int, repeats: int, audio_seconds: float
) -> dict[str, dict[str, Any]]:
    """RTF of our model on ``paths`` with ``threads`` threads (torch, and ONNX Runtime when the
    model runs its embedder there): per file and batched."""
    model.set_threads(threads)
    results = {}
    model.embed_batch(paths[:4], batch_size=2)  # untimed warm-up: one-off allocations
    cpu, wall = timed_passes(lambda: [model.embed(p) for p in paths], repeats)
    results["embed"] = rtf_record(cpu, wall, audio_seconds)
    cpu, wall = timed_passes(lambda: model.embed_batch(paths, batch_size=16), repeats)
    results["embed_batch"] = rtf_record(cpu, wall, audio_seconds)
    logger.info(
        "ours, %d thread(s): RTF %.4f per file, %.4f batched (CPU s / audio s)",
        threads,
        results["embed"]["rtf_cpu"],
        results["embed_batch"]["rtf_cpu"],
    )
    return results


def run_peer(
    peer_python: Path,
    data: Path,
    files: list[str],
    threads: int,
    repeats: int,
    workdir: Path,
    tag: str,
) -> dict[str, np.ndarray]:
    """Embed ``files`` (relative to ``<data>/wav``) with Resemblyzer in the peer venv.

    Returns:
        The arrays of the peer script's ``.npz`` (see ``bench/peers/resemblyzer_embed.py``).

    Raises:
        RuntimeError: the peer script failed, or skipped a file.
    """
    listing = workdir / f"{tag}.txt"
    listing.write_text("".join(f"{f} {data / 'wav' / f}\n" for f in files), encoding="utf-8")
    out = workdir / f"{tag}.npz"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [str(peer_python), str(PEER_SCRIPT), "--list", str(listing), "--out", str(out)]
    cmd += ["--threads", str(threads), "--repeats", str(repeats), "--log-every", "0"]
    logger.info("Resemblyzer: %d files, %d thread(s), %d pass(es)", len(files), threads, repeats)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{PEER_SCRIPT.name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if len(arrays["ids"]) != len(files):
        raise RuntimeError(f"Resemblyzer skipped files:\n{proc.stderr[-3000:]}")
    return arrays


def peer_rtf(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """RTF record from the per-pass totals of the peer script."""
    audio = float(arrays["durations"].sum())
    return rtf_record(
        [float(x) for x in arrays["repeat_cpu_seconds"]],
        [float(x) for x in arrays["repeat_wall_seconds"]],
        audio,
    )


def generalization(
    ids: Sequence[str],
    embeddings: np.ndarray,
    trials: Any,
    masks: dict[str, np.ndarray],
    pair: Scorer,
    matrix: Callable[[np.ndarray, np.ndarray], np.ndarray],
    durations: np.ndarray,
    draws: int,
    own: Any = None,
) -> dict[str, Any]:
    """Subset EERs and unseen-speaker identification of one system (one scoring)."""
    row = {u: i for i, u in enumerate(ids)}
    e = embeddings[[row[u] for u in trials.enroll]]
    t = embeddings[[row[u] for u in trials.test]]
    scores = pair(e, t)
    return {
        "subsets": subset_metrics(scores, np.asarray(trials.labels), masks),
        "identification": unseen_identification(
            list(ids), embeddings, matrix, draws=draws, own_threshold=own, durations=durations
        ),
    }


def render_generalization(result: dict[str, Any]) -> list[str]:
    """Markdown tables of the generalization rows of every system present."""
    gen = result.get("generalization")
    if not gen:
        return []
    names = list(gen)
    subsets = list(next(iter(gen.values()))["subsets"])
    lines = [
        "",
        "## Generalization (veri_test speakers: none is a training speaker)",
        "",
        "EER % (MinDCF0.01) per subset of veri_test trials: both sides < 2 s, both > 4 s, and "
        "per source (speakers' `source` in meta.csv; trials within one source).",
        "",
        "| subset | trials | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for sub in subsets:
        cells = []
        for n in names:
            m = gen[n]["subsets"].get(sub)
            cells.append(f"{100 * m['eer']:.2f} ({m['min_dcf']:.3f})" if m else "-")
        trials = gen[names[0]]["subsets"][sub]["trials"]
        lines.append(f"| {sub} | {trials} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Unseen-speaker identification: every veri_test speaker enrolled from the mean of k "
        "random utterances, every other utterance identified (mean of "
        f"{result['generalization_draws']} draws). Open set: a third of the speakers held out "
        "as impostors, accuracy at the threshold accepting 1 % of impostor queries (the same "
        "rule for every system); 'own' is ours with its shipped calibration at far=1%.",
        "",
        "| system | k | top-1 % | top-5 % | open-set % @1% FA | own open-set % (impostors %) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        for r in gen[n]["identification"]:
            own = (f"{100 * r['open_set_own']:.1f} ({100 * r['own_impostors_accepted']:.1f})"
                   if "open_set_own" in r else "-")  # fmt: skip
            lines.append(
                f"| {n} | {r['k']} | {100 * r['top1']:.1f} | {100 * r['top5']:.1f} | "
                f"{100 * r['open_set_far1']:.1f} | {own} |"
            )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    """The results as a markdown table plus a one-line verdict."""
    rz = result["systems"]["resemblyzer"]
    base = rz["threads"]["1"]["rtf_cpu"]
    lines = [
        "# Inference: our model vs Resemblyzer on wildmix",
        "",
        f"Model `{result['model']['path']}` (`{result['model']['id']}`, "
        f"{result['model']['params'] / 1e6:.2f} M params, embedder run by "
        f"{result['model'].get('backend', 'torch')}). Timing: {result['subset']['files']} "
        f"veri_test utterances ({result['subset']['audio_seconds']:.0f} s of audio), decoding "
        f"included, median of {result['repeats']} passes; RTF = CPU s / audio s (lower is faster). "
        f"Accuracy: full veri_test.txt ({result['trials']} trials), cosine scores and, where a "
        "cohort exists, AS-Norm (top 100) scores (ours from `embed_batch`, so both rows of ours "
        "share them; ours ships its cohort, the peer's is our backend lent to it).",
        "",
        "| system | RTF 1 thread | RTF 2 threads | ratio to Resemblyzer (1 thread) "
        "| EER % cosine | MinDCF0.01 cosine | EER % AS-Norm | MinDCF0.01 AS-Norm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("ours, per file (`embed`)", "ours", "embed"),
        ("ours, batched (`embed_batch`)", "ours", "embed_batch"),
        ("Resemblyzer 0.1.4 (read + VAD + embed)", "resemblyzer", None),
    ]
    for label, system, mode in rows:
        rec = result["systems"][system]
        t1, t2 = (rec["threads"][k] if mode is None else rec["threads"][k][mode] for k in "12")
        norm = rec.get("accuracy_asnorm")
        normed = f"{100 * norm['eer']:.2f} | {norm['min_dcf']:.3f}" if norm else "- | -"
        lines.append(
            f"| {label} | {t1['rtf_cpu']:.4f} | {t2['rtf_cpu']:.4f} | {t1['rtf_cpu'] / base:.2f} "
            f"| {100 * rec['accuracy']['eer']:.2f} | {rec['accuracy']['min_dcf']:.3f} | {normed} |"
        )
    lines += ["", "Wall-clock RTF (shared machine: includes waiting for other jobs):", ""]
    lines += ["| system | 1 thread | 2 threads |", "|---|---:|---:|"]
    for label, system, mode in rows:
        rec = result["systems"][system]
        t1, t2 = (rec["threads"][k] if mode is None else rec["threads"][k][mode] for k in "12")
        lines.append(f"| {label} | {t1['rtf_wall']:.4f} | {t2['rtf_wall']:.4f} |")
    lines += render_generalization(result)
    lines += ["", result["verdict"], ""]
    load = result["machine"]["load_average"]
    lines.append(
        f"Machine: {result['machine']['cpus']} CPUs, load average {load['start']:.1f} at start, "
        f"{load['end']:.1f} at end; torch {result['machine']['torch']}; "
        f"OMP_WAIT_POLICY={result['machine'].get('omp_wait_policy') or 'unset'}."
    )
    return "\n".join(lines) + "\n"


def verdict(result: dict[str, Any]) -> str:
    """One honest sentence on speed and accuracy, whichever way the gap goes: each system as
    shipped (ours with its cohort when it has one, Resemblyzer with cosine)."""
    ours, rz = result["systems"]["ours"], result["systems"]["resemblyzer"]
    speed = rz["threads"]["1"]["rtf_cpu"] / ours["threads"]["1"]["embed"]["rtf_cpu"]
    faster = f"{speed:.2f}x as fast as" if speed >= 1 else f"{1 / speed:.2f}x slower than"
    acc = ours.get("accuracy_asnorm") or ours["accuracy"]
    how = "AS-Norm, as shipped" if "accuracy_asnorm" in ours else "cosine"
    d_eer = 100 * (acc["eer"] - rz["accuracy"]["eer"])
    better = "lower (better)" if d_eer < 0 else "higher (worse)"
    d_dcf = acc["min_dcf"] - rz["accuracy"]["min_dcf"]
    text = (
        f"Verdict: one file at a time on 1 thread our model is {faster} Resemblyzer; its EER "
        f"({how}) is {abs(d_eer):.2f} points {better} ({100 * acc['eer']:.2f} % vs "
        f"{100 * rz['accuracy']['eer']:.2f} % for Resemblyzer's cosine) and its MinDCF0.01 "
        f"{d_dcf:+.3f} ({acc['min_dcf']:.3f} vs {rz['accuracy']['min_dcf']:.3f})."
    )
    if "accuracy_asnorm" in rz:
        peer = rz["accuracy_asnorm"]
        text += (
            f" With our AS-Norm backend lent to it, Resemblyzer reaches "
            f"{100 * peer['eer']:.2f} % / {peer['min_dcf']:.3f}."
        )
    return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="wildmix folder")
    parser.add_argument("--model", type=Path, default=None, help="exported model folder")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--subset", type=int, default=300, help="utterances timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-seconds", type=float, default=0.1, help="shortest clip accepted")
    parser.add_argument(
        "--peer-veri-npz",
        type=Path,
        default=None,
        help="reuse Resemblyzer embeddings of the veri_test files (resemblyzer_embed.py output, "
        "ids relative to wav/) instead of computing them",
    )
    parser.add_argument(
        "--peer-cohort-npz",
        type=Path,
        default=None,
        help="Resemblyzer embeddings of training files (ids <corpus>/<speaker>/...): also score "
        "the peer with AS-Norm against their per-speaker means",
    )
    parser.add_argument("--draws", type=int, default=5, help="enrolment draws (identification)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.subset < 1 or args.repeats < 1:
        parser.error("--subset and --repeats must be >= 1")
    trials_path = args.data / "veri_test.txt"
    if not trials_path.is_file():
        parser.error(f"{trials_path} not found (set --data or WILDVOX_DATA)")
    if not args.peer_python.is_file():
        parser.error(f"{args.peer_python} not found: run `make peer-env` first")
    model_dir = resolve_model(args.model)
    load_start = os.getloadavg()[0]

    trials = read_trials(trials_path)
    labels = np.asarray(trials.labels)
    all_files = sorted(set(trials.enroll) | set(trials.test))
    subset = pick_subset(all_files, args.subset, args.seed)
    wav = args.data / "wav"
    durations = {f: sf.info(str(wav / f)).duration for f in all_files}
    subset_audio = float(sum(durations[f] for f in subset))
    subset_paths = [str(wav / f) for f in subset]
    logger.info(
        "%d trials, %d files; timing %d files, %.0f s",
        len(labels),
        len(all_files),
        len(subset),
        subset_audio,
    )

    model = load_model(model_dir)
    model.min_seconds = args.min_seconds
    params = sum(p.numel() for p in model.exported.net.parameters())
    ours: dict[str, Any] = {"threads": {}}
    for threads in (1, 2):
        ours["threads"][str(threads)] = time_ours(
            model, subset_paths, threads, args.repeats, subset_audio
        )
    model.set_threads(1)
    c0 = time.process_time()
    ours_emb = model.embed_batch([str(wav / f) for f in all_files], batch_size=16)
    ours["veri_embed_cpu_seconds"] = time.process_time() - c0
    ours["accuracy"] = trial_metrics(all_files, ours_emb, trials.enroll, trials.test, labels)
    if model.cohort is not None:
        ours["accuracy_asnorm"] = trial_metrics(
            all_files, ours_emb, trials.enroll, trials.test, labels, score=model.score
        )
    logger.info("ours: %s", ours["accuracy"])

    rz: dict[str, Any] = {"threads": {}}
    with tempfile.TemporaryDirectory(prefix="wildvox-peer-") as tmp:
        for threads in (1, 2):
            arrays = run_peer(
                args.peer_python, args.data, subset, threads, args.repeats, Path(tmp), f"t{threads}"
            )
            rz["threads"][str(threads)] = peer_rtf(arrays)
            rtf = rz["threads"][str(threads)]["rtf_cpu"]
            logger.info("Resemblyzer, %d thread(s): RTF %.4f", threads, rtf)
        if args.peer_veri_npz is None:
            arrays = run_peer(args.peer_python, args.data, all_files, 1, 1, Path(tmp), "veri")
        else:
            with np.load(args.peer_veri_npz) as npz:
                arrays = {k: npz[k] for k in npz.files}
    rz["veri_embed_cpu_seconds"] = float(arrays["seconds"].sum())
    rz["veri_embeddings"] = str(args.peer_veri_npz or "computed in this run")
    rz["vad_fallback_files"] = int(arrays["vad_fallback"].sum())
    rz["accuracy"] = trial_metrics(
        [str(i) for i in arrays["ids"]], arrays["embeddings"], trials.enroll, trials.test, labels
    )
    if args.peer_cohort_npz is not None:
        rz["accuracy_asnorm"] = trial_metrics(
            [str(i) for i in arrays["ids"]], arrays["embeddings"], trials.enroll, trials.test,
            labels, score=peer_asnorm(args.peer_cohort_npz).score_pairs,
        )  # fmt: skip
        rz["cohort"] = str(args.peer_cohort_npz)
    logger.info("Resemblyzer: %s", rz["accuracy"])

    # generalization rows: the same trials and files for every system
    meta_path = args.data / "meta.csv"
    groups = ({s: m.get("source", "?") for s, m in read_meta(meta_path).items()}
              if meta_path.is_file() else None)  # fmt: skip
    masks = trial_subsets(trials.enroll, trials.test, durations, groups)
    dur_arr = np.array([durations[f] for f in all_files])
    cal = model.calibration

    def own_decision(best: np.ndarray, enrolled_s: np.ndarray, query_s: np.ndarray, n: int) -> Any:
        if cal is None:
            raise ValueError("the model has no calibration")
        thr = cal.identification_threshold("far=1%", n)
        return cal.llr(best, enrolled_s, query_s) >= thr

    rz_ids = [str(i) for i in arrays["ids"]]
    rz_row = {u: i for i, u in enumerate(rz_ids)}
    rz_emb = arrays["embeddings"][[rz_row[f] for f in all_files]]
    gen: dict[str, Any] = {}
    if model.cohort is not None:
        gen["ours (AS-Norm, as shipped)"] = generalization(
            all_files, ours_emb, trials, masks, model.score, model.score_matrix, dur_arr,
            args.draws, own_decision if cal is not None else None,
        )  # fmt: skip
    gen["ours (cosine)"] = generalization(
        all_files, ours_emb, trials, masks, cosine_score_pairs, cosine_matrix, dur_arr, args.draws
    )
    gen["Resemblyzer (cosine)"] = generalization(
        all_files, rz_emb, trials, masks, cosine_score_pairs, cosine_matrix, dur_arr, args.draws
    )
    if args.peer_cohort_npz is not None:
        peer = peer_asnorm(args.peer_cohort_npz)
        gen["Resemblyzer (our AS-Norm)"] = generalization(
            all_files, rz_emb, trials, masks, peer.score_pairs, peer.score_matrix, dur_arr,
            args.draws,
        )  # fmt: skip

    result: dict[str, Any] = {
        "data": str(args.data),
        "model": {
            "path": display_path(model_dir),
            "id": model.model_id,
            "params": params,
            "backend": model.backend,
            "scoring": model.scoring,
        },
        "subset": {"files": len(subset), "audio_seconds": subset_audio, "seed": args.seed},
        "veri_files": len(all_files),
        "veri_audio_seconds": float(sum(durations.values())),
        "trials": len(labels),
        "repeats": args.repeats,
        "min_seconds": args.min_seconds,
        "systems": {"ours": ours, "resemblyzer": rz},
        "generalization": gen,
        "generalization_draws": args.draws,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": {"start": load_start, "end": os.getloadavg()[0]},
            "torch": torch.__version__,
            "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        },
    }
    result["verdict"] = verdict(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "inference.md").write_text(render_markdown(result))
    logger.info("%s", result["verdict"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
