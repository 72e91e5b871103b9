"""Diarization on generated meetings: DER, speaker-count error and naming accuracy.

    OMP_NUM_THREADS=1 python bench/diarization.py run [--per-size 20] [--seed 0]
    OMP_NUM_THREADS=1 python bench/diarization.py calibrate [--per-size 8] [--seed 100000]

``run`` generates ``per-size`` meetings of each size 2..6 from the wildmix test speakers
(meeting ``i`` of size ``k`` has seed ``seed + 1000 * k + i``), diarizes each with the shipped
model (speaker count estimated, and with the true count as an oracle row), and names the
clusters against a store holding half of the test speakers (every other one, enrolled from the
files the generator never uses). DER with pyannote.metrics, collar 0 and +-0.25 s.
``calibrate`` picks the clustering stopping distance on meetings of other seeds.
Results: bench/results/diarization.{json,md} and diarization_calibration.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wildvox.api import SpeakerModel, load_model
from wildvox.audio.io import audio_info, load_audio
from wildvox.diarize.cluster import MIN_WINDOWS, STOP_DISTANCE
from wildvox.diarize.meetings import MeetingCorpus, generate_meeting, split_files
from wildvox.diarize.pipeline import diarize_segments
from wildvox.diarize.rttm import Turn
from wildvox.diarize.scoring import der, naming_accuracy
from wildvox.diarize.segments import Segments, embed_segments, speech_regions

CORPUS = Path("/work/shared/corpora/wildmix")
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (2, 3, 4, 5, 6)
POINTS = ("eer", "far=1%")


def _embedded(
    model: SpeakerModel, corpus: MeetingCorpus, k: int, seed: int, cache: Path | None
) -> dict:
    """A generated meeting's reference and its VAD + window embeddings (cached in ``cache``:
    the clustering can then be re-run without the embedding work)."""
    hit = None if cache is None else cache / f"k{k}_s{seed}"
    if hit is not None and hit.with_suffix(".json").is_file():
        meta = json.loads(hit.with_suffix(".json").read_text())
        return {**meta, "turns": [Turn(*t) for t in meta["turns"]],
                "regions": [tuple(r) for r in meta["regions"]],
                "segs": Segments.load(hit.with_suffix(".npz"))}  # fmt: skip
    m = generate_meeting(corpus, k, seed)
    t0 = time.perf_counter()
    regions = speech_regions(model, m.audio, m.sample_rate)
    segs = embed_segments(model, m.audio, regions=regions, sample_rate=m.sample_rate)
    meta = {"turns": [[t.start, t.end, t.speaker] for t in m.turns], "regions": regions,
            "duration": m.duration, "overlap": m.overlap,
            "seconds": time.perf_counter() - t0}  # fmt: skip
    if hit is not None:
        hit.parent.mkdir(parents=True, exist_ok=True)
        segs.save(hit.with_suffix(".npz"))
        hit.with_suffix(".json").write_text(json.dumps(meta))
    return {**meta, "turns": m.turns, "segs": segs}


def calibrate(args: argparse.Namespace) -> None:
    model = load_model(store=Path(tempfile.mkdtemp()) / "none.sqlite")
    model.set_threads(1)
    corpus = MeetingCorpus(args.corpus)
    grid = [round(x, 2) for x in np.arange(0.40, 0.96, 0.05)]
    rows: dict[float, list[tuple[int, float, int]]] = {t: [] for t in grid}
    for k in SIZES:
        for i in range(args.per_size):
            e = _embedded(model, corpus, k, args.seed + 1000 * k + i, args.cache)
            for t in grid:
                d = diarize_segments(None, e["segs"], e["regions"], threshold=t)
                rows[t].append((k, der(e["turns"], d.turns).der, len(d.speakers) - k))
        print(f"calibrate: size {k} done", file=sys.stderr)
    table = []
    for t in grid:
        r = np.array(rows[t])
        table.append({
            "threshold": t,
            "der": float(np.mean([r[r[:, 0] == k, 1].mean() for k in SIZES])),
            "count_abs_error": float(np.abs(r[:, 2]).mean()),
            "count_bias": float(r[:, 2].mean()),
        })  # fmt: skip
    best = min(table, key=lambda x: x["der"])
    out = {"command": " ".join(["python", *sys.argv]), "seed": args.seed,
           "per_size": args.per_size, "min_windows": MIN_WINDOWS, "grid": table,
           "best": best}  # fmt: skip
    (RESULTS / "diarization_calibration.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# Diarization: stopping distance of the clustering",
        "",
        f"Command: `OMP_NUM_THREADS=1 {out['command']}` (generator seeds "
        f"{args.seed} + 1000 * size + i, i < {args.per_size}; the benchmark uses other seeds).",
        f"Mean DER (collar 0) over sizes 2-6, speaker-count error; min_windows={MIN_WINDOWS}.",
        "",
        "| stop distance | DER % | mean abs count error | count bias |",
        "|---|---|---|---|",
        *[
            f"| {r['threshold']:.2f} | {100 * r['der']:.1f} | {r['count_abs_error']:.2f} | "
            f"{r['count_bias']:+.2f} |"
            for r in table
        ],
        "",
        f"Lowest DER at {best['threshold']:.2f}.",
    ]
    (RESULTS / "diarization_calibration.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(best))


def _store(model: SpeakerModel, corpus: MeetingCorpus) -> list[str]:
    """Enrol every other test speaker from its enrolment files of at least 1 s."""
    enrolled = corpus.speakers[::2]
    for spk in enrolled:
        files = [f for f in split_files(corpus.files(spk))[0] if audio_info(f).duration >= 1.0]
        model.enroll(spk, [str(f) for f in files])
    return enrolled


def run(args: argparse.Namespace) -> None:
    model = load_model(store=Path(tempfile.mkdtemp()) / "bench.sqlite")
    model.set_threads(1)
    corpus = MeetingCorpus(args.corpus)
    enrolled = _store(model, corpus)
    per: list[dict] = []
    for k in SIZES:
        for i in range(args.per_size):
            seed = args.seed + 1000 * k + i
            e = _embedded(model, corpus, k, seed, args.cache)
            ref = e["turns"]
            row = {"size": k, "seed": seed, "duration": e["duration"], "overlap": e["overlap"],
                   "embed_seconds": e["seconds"]}  # fmt: skip
            for point in POINTS:
                d = diarize_segments(model, e["segs"], e["regions"], operating_point=point)
                n = naming_accuracy(ref, d.turns, enrolled)
                row[f"naming_{point}"] = [n.enrolled, n.enrolled_named, n.unenrolled,
                                          n.unenrolled_unknown]  # fmt: skip
            row["estimated"] = len(d.speakers)
            row["der"] = [der(ref, d.turns, c).der for c in (0.0, 0.25)]
            oracle = diarize_segments(None, e["segs"], e["regions"], num_speakers=k)
            row["der_oracle"] = [der(ref, oracle.turns, c).der for c in (0.0, 0.25)]
            per.append(row)
        print(f"run: size {k} done", file=sys.stderr)
    summary = []
    for k in [*SIZES, 0]:
        rows = [r for r in per if k in (0, r["size"])]
        item = {
            "size": "all" if k == 0 else k,
            "meetings": len(rows),
            "overlap": float(np.mean([r["overlap"] for r in rows])),
            "der": float(np.mean([r["der"][0] for r in rows])),
            "der_collar": float(np.mean([r["der"][1] for r in rows])),
            "der_oracle": float(np.mean([r["der_oracle"][0] for r in rows])),
            "der_oracle_collar": float(np.mean([r["der_oracle"][1] for r in rows])),
            "count_exact": float(np.mean([r["estimated"] == r["size"] for r in rows])),
            "count_abs_error": float(np.mean([abs(r["estimated"] - r["size"]) for r in rows])),
        }
        for point in POINTS:
            c = np.sum([r[f"naming_{point}"] for r in rows], axis=0)
            item[f"naming_{point}"] = {"accuracy": float((c[1] + c[3]) / (c[0] + c[2])),
                                       "enrolled_named": f"{c[1]}/{c[0]}",
                                       "unenrolled_unknown": f"{c[3]}/{c[2]}"}  # fmt: skip
        summary.append(item)
    audio = sum(r["duration"] for r in per)
    embed_s = sum(r["embed_seconds"] for r in per)
    out = {
        "command": " ".join(["python", *sys.argv]),
        "env": "OMP_NUM_THREADS=1, 1 torch thread, shipped model, backend " + model.backend,
        "seed": args.seed,
        "per_size": args.per_size,
        "stop_distance": STOP_DISTANCE,
        "enrolled": enrolled,
        "collars": "0 and +-0.25 s (pyannote collar=0.5)",
        "vad_embed_seconds_per_audio_second": embed_s / audio,
        "summary": summary,
        "meetings": per,
    }
    (RESULTS / "diarization.json").write_text(json.dumps(out, indent=2) + "\n")
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [
        "# Diarization of generated meetings (wildmix test speakers)",
        "",
        f"Command: `OMP_NUM_THREADS=1 {out['command']}`; generator seed {args.seed} (meeting i "
        f"of size k: seed {args.seed} + 1000 k + i), {args.per_size} meetings per size, "
        "60-90 s each, turns 1-15 s, 0-20 % overlap target, no noise.",
        f"Shipped model ({model.backend}), 3 s windows every 1.5 s over Silero VAD speech, "
        f"average-linkage clustering stopped at cosine distance {STOP_DISTANCE} "
        "(bench/results/diarization_calibration.md), 0.1 s re-segmentation; overlap is not "
        "detected (one speaker per frame). DER from pyannote.metrics with no collar and with "
        "+-0.25 s around reference boundaries; overlapped speech scored.",
        f"Naming: a store of {len(enrolled)} of the 22 test speakers (every other one), enrolled "
        "from files the generator never uses; a reference speaker is right when its mapped "
        "cluster carries its name (enrolled) or an unknown-N label (not enrolled).",
        f"VAD + embedding: {embed_s / audio:.3f} s per second of audio on 1 thread.",
        "",
        "| speakers | meetings | overlap % | DER % | DER % (+-0.25 s) | DER % oracle count "
        "| oracle (+-0.25 s) | count exact % | count abs err | naming acc % (eer) "
        "| naming acc % (far=1%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['size']} | {s['meetings']} | {pct(s['overlap'])} | {pct(s['der'])} | "
            f"{pct(s['der_collar'])} | {pct(s['der_oracle'])} | {pct(s['der_oracle_collar'])} | "
            f"{pct(s['count_exact'])} | {s['count_abs_error']:.2f} | "
            f"{pct(s['naming_eer']['accuracy'])} ({s['naming_eer']['enrolled_named']} named, "
            f"{s['naming_eer']['unenrolled_unknown']} unknown) | "
            f"{pct(s['naming_far=1%']['accuracy'])} ({s['naming_far=1%']['enrolled_named']}, "
            f"{s['naming_far=1%']['unenrolled_unknown']}) |"
        )
    (RESULTS / "diarization.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from wildvox.api import load_model
from wildvox.diarize.pipeline import diarize
m = load_model(store=sys.argv[3])
m.max_seconds = 4 * 3600.0
t = time.perf_counter()
if sys.argv[2] == "segments":
    n = len(m.embed_segments(sys.argv[1]))
else:
    n = len(diarize(m, sys.argv[1], operating_point=None).speakers)
print(json.dumps({"what": sys.argv[2], "seconds": time.perf_counter() - t, "count": n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def long_audio(args: argparse.Namespace) -> None:
    """Peak RSS and time of embed_segments (and diarize) on a ``--minutes`` WAV of test speech,
    written block by block, each in a fresh process."""
    import subprocess

    import soundfile as sf

    corpus = MeetingCorpus(args.corpus)
    tmp = Path(tempfile.mkdtemp())
    wav = tmp / "long.wav"
    need = round(args.minutes * 60 * 16000)
    files = [f for s in corpus.speakers for f in corpus.files(s)]
    with sf.SoundFile(wav, "w", 16000, 1, "PCM_16") as out:
        done, k = 0, 0
        while done < need:
            clip = load_audio(files[k % len(files)], min_duration=0.0)[: need - done]
            out.write(clip)
            done, k = done + clip.shape[0], k + 1
    rows = []
    for what in args.what:
        res = subprocess.run([sys.executable, "-c", CHILD, str(wav), what, str(tmp / "s.sqlite")],
                             capture_output=True, text=True, check=True)  # fmt: skip
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    out_json = {"command": " ".join(["python", *sys.argv]), "minutes": args.minutes,
                "env": "OMP_NUM_THREADS=1, 1 torch thread", "runs": rows}  # fmt: skip
    (RESULTS / "diarization_long.json").write_text(json.dumps(out_json, indent=2) + "\n")
    lines = [
        f"# Long audio: {args.minutes:g} minutes of wildmix test speech (16 kHz PCM-16 WAV)",
        "",
        f"Command: `OMP_NUM_THREADS=1 {out_json['command']}`; each run in a fresh process, "
        "peak RSS from ru_maxrss (model load included). `segments`: model.embed_segments "
        "(3 s windows, 1.5 s hop, whole file); `diarize`: VAD + windows over speech + "
        "clustering + re-segmentation, no naming.",
        "",
        "| run | windows / speakers | seconds | x real time | peak RSS (MB) |",
        "|---|---|---|---|---|",
        *[
            f"| {r['what']} | {r['count']} | {r['seconds']:.0f} | "
            f"{args.minutes * 60 / r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |"
            for r in rows
        ],
    ]
    (RESULTS / "diarization_long.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["run", "calibrate", "long"])
    p.add_argument("--minutes", type=float, default=60.0, help="long: length of the file")
    p.add_argument("--what", nargs="+", default=["segments", "diarize"], help="long: runs")
    p.add_argument("--per-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--cache", type=Path, default=None, help="keep VAD + embeddings here")
    args = p.parse_args()
    if args.mode == "long":
        long_audio(args)
    elif args.mode == "run":
        args.per_size = args.per_size or 20
        args.seed = 0 if args.seed is None else args.seed
        run(args)
    else:
        args.per_size = args.per_size or 8
        args.seed = 100000 if args.seed is None else args.seed
        calibrate(args)


if __name__ == "__main__":
    main()
