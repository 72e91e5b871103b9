"""``wildvox report``: the first paper's data table, SVM baseline and K-Means/PCA figure.

From *Speaker Recognition in the Wild*: Table I (corpus, identification set, verification
set), the gender-preserving speaker subset (optional), the RBF-SVM baseline on utterance-mean
log-Mel features and Figure 1 (K-Means clusters against true labels in a PCA plane, for the
shipped model's embeddings and for the mean log-Mel vectors). Everything is computed from the
corpus at ``root`` in the run that writes the report: ``report.json``, ``report.md``, the
figures as PNG and, with a drawn subset, the lists the run used under ``lists/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wildvox.data.corpora.voxceleb import (
    CorpusError,
    cap_per_speaker,
    read_iden_split,
    read_meta,
    speaker_of,
    speakers_of_ids,
)
from wildvox.data.trials import read_trials
from wildvox.inference.model_io import ExportedModel
from wildvox.reports.evaluation import embed_ids
from wildvox.reports.paper_data import (
    corpus_files,
    durations,
    sample_subset,
    speakers_with_files,
    table_one,
    write_subset_lists,
)
from wildvox.reports.paper_models import cluster_picture, mean_logmel, plot_clusters, svm_baseline
from wildvox.reports.render import render_sections, write_report

logger = logging.getLogger(__name__)

ProgressFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]
META_NAMES = ("meta.csv", "vox1_meta.csv", "vox2_meta.csv")
NOT_YET = (
    "Table II (the model zoo over 3 seeds with a fusion row), the IDLab tables 1-3, the "
    "VoxCeleb recipes and sharded extraction (the rest of issue #17) are not part of this "
    "report yet."
)


@dataclass(frozen=True)
class PaperPreset:
    """Sizes of a report run.

    Attributes:
        name: ``full``, ``quick`` or ``tiny``.
        svm_per_speaker: SVM training utterances a speaker (split 1; the paper: 50).
        fit_per_speaker: K-Means training utterances a test speaker (split 1; the paper: 50).
        pca_fit: PCA fit rows drawn from the K-Means training set.
        max_speakers: identification speakers kept (those with test utterances first); 0 all.
        test_per_speaker: test utterances a speaker; 0 all.
        max_trials: verification trials kept (Table I's verification set); 0 all.
    """

    name: str
    svm_per_speaker: int = 50
    fit_per_speaker: int = 50
    pca_fit: int = 2000
    max_speakers: int = 0
    test_per_speaker: int = 0
    max_trials: int = 0


PRESETS = {
    "full": PaperPreset("full"),
    # the paper's SVM training caps; fewer Figure 1 points to embed (the neural step)
    "quick": PaperPreset("quick", fit_per_speaker=20, pca_fit=1000),
    "tiny": PaperPreset(
        "tiny",
        svm_per_speaker=5,
        fit_per_speaker=5,
        pca_fit=200,
        max_speakers=5,
        test_per_speaker=4,
        max_trials=30,
    ),
}


def find_meta(root: Path) -> Path:
    """The corpus' speaker meta file (``meta.csv``, ``vox1_meta.csv`` or ``vox2_meta.csv``)."""
    for name in META_NAMES:
        if (root / name).is_file():
            return root / name
    raise CorpusError(f"{root}: no speaker meta file ({', '.join(META_NAMES)})")


@contextmanager
def _no_progress(_: str, __: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@dataclass
class _Lists:
    iden: Path
    veri: Path
    subset: dict[str, Any]


def _lists(
    root: Path,
    out_dir: Path,
    meta: dict[str, dict[str, str]],
    subset: tuple[int, int] | None,
    seed: int,
) -> _Lists:
    if subset is None:
        iden, veri = root / "iden_split.txt", root / "veri_test.txt"
        info = {"lists": f"the corpus' own {iden.name} and {veri.name}"}
        return _Lists(iden, veri, info)
    lists = out_dir / "lists"
    n, m = subset
    pool = {speaker_of(rel) for _, rel in read_iden_split(root / "iden_split.txt")}
    veri_pool = speakers_with_files(corpus_files(root), 2)
    choice = sample_subset(meta, n, m, seed=seed, iden_pool=pool, veri_pool=veri_pool)
    iden, veri = write_subset_lists(root, choice, lists)
    info = {
        "lists": f"{n} identification speakers drawn preserving gender shares, {m} further "
        "verification speakers; official splits kept (written to lists/)",
        "identification speakers": " ".join(choice.iden),
        "verification speakers": " ".join(choice.veri),
    }
    return _Lists(iden, veri, info)


def _slice(utts: list[tuple[int, str]], preset: PaperPreset, seed: int) -> list[tuple[int, str]]:
    """The identification utterances a preset keeps: its speakers (test speakers first) and at
    most ``test_per_speaker`` test utterances a speaker."""
    if preset.max_speakers:
        tested = sorted({speaker_of(r) for s, r in utts if s == 3})
        others = sorted({speaker_of(r) for _, r in utts} - set(tested))
        keep = set((tested + others)[: preset.max_speakers])
        utts = [u for u in utts if speaker_of(u[1]) in keep]
    if preset.test_per_speaker:
        test = [u for u in utts if u[0] == 3]
        capped = set(
            cap_per_speaker(test, [speaker_of(r) for _, r in test], preset.test_per_speaker, seed)
        )
        utts = [u for u in utts if u[0] != 3 or u in capped]
    return utts


def _cap(ids: Sequence[str], limit: int, seed: int) -> list[str]:
    return cap_per_speaker(list(ids), speakers_of_ids(ids).tolist(), limit, seed)


def _indices(ids: Sequence[str], classes: dict[str, int]) -> np.ndarray:
    return np.asarray([classes[speaker_of(i)] for i in ids], dtype=np.int64)


def _markdown(title: str, sections: dict[str, Any], images: list[str]) -> str:
    """Each section a heading; its parts (a table, its setup) one level down."""
    out = [f"# {title}", ""]
    for name, body in sections.items():
        if not isinstance(body, dict) or not all(isinstance(v, dict | list) for v in body.values()):
            out += render_sections(title, {name: body}).split("\n")[2:]
            continue
        out += [f"## {name}", ""]
        for part, sub in body.items():
            lines = render_sections(title, {part: sub}).split("\n")[2:]
            out += ["#" + ln if ln.startswith("## ") else ln for ln in lines]
    return "\n".join([*out, "## Figures", "", *[f"{i}\n" for i in images]])


def _figure_one(
    vectors: dict[str, dict[str, np.ndarray]],
    fit_ids: list[str],
    test_ids: list[str],
    out_dir: Path,
    model_id: str,
    preset: PaperPreset,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Figure 1 for each kind of vector (name -> {utterance id: (D,) vector}): its K-Means /
    PCA figure written to ``out_dir``, its row of results and its markdown image link."""
    test_spk = sorted({speaker_of(i) for i in test_ids})
    tcls = {s: i for i, s in enumerate(test_spk)}
    figure: dict[str, dict[str, Any]] = {}
    images = []
    for name, by_id in vectors.items():
        pic = cluster_picture(
            np.stack([by_id[i] for i in fit_ids]),
            np.stack([by_id[i] for i in test_ids]),
            _indices(test_ids, tcls),
            k=len(test_spk),
            pca_fit=preset.pca_fit,
            seed=seed,
        )
        png = f"figure1_{name.replace(' ', '_').replace('-', '').lower()}.png"
        what = f"model {model_id}" if name == "embeddings" else "mean log-Mel"
        plot_clusters(pic, out_dir / png, f"Figure 1: K-Means vs speakers, {what}")
        figure[name] = {
            "ARI": pic.ari,
            "NMI": pic.nmi,
            "clusters (K)": len(test_spk),
            "fit utterances": len(fit_ids),
            "test utterances": len(test_ids),
            "PCA variance": pic.explained,
            "figure": png,
        }
        images.append(f"![Figure 1, {name}]({png})")
    return figure, images


def paper_report(
    root: Path,
    out_dir: Path,
    model: ExportedModel,
    *,
    preset: PaperPreset = PRESETS["quick"],
    seed: int = 0,
    subset: tuple[int, int] | None = None,
    command: str = "",
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Run every section, write ``report.json``/``report.md``/figures into ``out_dir``.

    Args:
        root: a VoxCeleb-layout corpus (``wav/``, ``iden_split.txt``, ``veri_test.txt``, a meta
            file).
        model: the model whose embeddings Figure 1 shows (``wildvox.api.load_model().exported``).
        subset: ``(N, M)``: draw N identification and M verification speakers (gender
            preserving) instead of using the corpus' own lists.
        command: the command line that ran the report, written into it.

    Returns:
        The report dict, as written to ``report.json``.
    """
    bar = progress or _no_progress
    started = time.perf_counter()
    setup = {"command": command, "seed": seed, "preset": preset.name}
    meta = read_meta(find_meta(root))
    t0 = time.perf_counter()
    lists = _lists(root, out_dir, meta, subset, seed)
    rows = _slice(read_iden_split(lists.iden), preset, seed)
    kept = {speaker_of(r) for _, r in rows}
    if len(kept) < 2:
        raise CorpusError(f"{lists.iden}: fewer than 2 identification speakers")
    trials = read_trials(lists.veri)
    veri_ids = trials.utterances()
    if preset.max_trials:
        veri_ids = list(
            dict.fromkeys(trials.enroll[: preset.max_trials] + trials.test[: preset.max_trials])
        )
    all_ids = corpus_files(root)
    if preset.max_speakers:  # a slice: the full corpus is the slice's speakers
        wanted = kept | {speaker_of(i) for i in veri_ids}
        all_ids = [i for i in all_ids if speaker_of(i) in wanted]
    iden_ids = [r for _, r in rows]
    needed = list(dict.fromkeys(all_ids + iden_ids + veri_ids))
    with bar("durations", len(needed)) as advance:
        secs = dict(zip(needed, durations(root, needed, advance).tolist(), strict=True))
    table = table_one(all_ids, iden_ids, veri_ids, secs, meta)
    stats = list(table["full corpus"])
    sections: dict[str, Any] = {
        "Table I: corpus statistics": {
            "table": [
                {"statistic": k, **{name: col[k] for name, col in table.items()}} for k in stats
            ],
            "setup": {
                **setup,
                **lists.subset,
                "meta file": find_meta(root).name,
                "seconds": round(time.perf_counter() - t0, 1),
            },
        }
    }

    # Baseline: RBF-SVM on mean log-Mel, split 1 (capped) -> split 3.
    t0 = time.perf_counter()
    train_ids = _cap([r for s, r in rows if s == 1], preset.svm_per_speaker, seed)
    test_ids = [r for s, r in rows if s == 3]
    if not test_ids:
        raise CorpusError(f"{lists.iden}: no test (split 3) utterances")
    test_spk = sorted({speaker_of(i) for i in test_ids})
    fit_ids = _cap(
        [r for s, r in rows if s == 1 and speaker_of(r) in set(test_spk)],
        preset.fit_per_speaker,
        seed,
    )
    feat_ids = list(dict.fromkeys(train_ids + test_ids + fit_ids))
    with bar("mean log-Mel", len(feat_ids)) as advance:
        feats = dict(zip(feat_ids, mean_logmel(root, feat_ids, model.config, advance), strict=True))
    classes = {s: i for i, s in enumerate(sorted({speaker_of(i) for i in train_ids}))}
    svm = svm_baseline(
        np.stack([feats[i] for i in train_ids]),
        _indices(train_ids, classes),
        np.stack([feats[i] for i in test_ids]),
        _indices(test_ids, classes),
    )
    baseline_secs = round(time.perf_counter() - t0, 1)
    sections["Baseline: RBF-SVM (C = 1) on utterance-mean log-Mel"] = {
        "results": {
            **svm,
            "features": f"mean of {model.config.features.n_mels} log-Mel bands, standardised",
            "training": f"split 1, at most {preset.svm_per_speaker} utterances a speaker",
            "test": "split 3",
        },
        "published (different data)": {
            "the paper, VoxCeleb1 100-speaker subset": {
                "top1": 0.1398,
                "top5": "n/a",
                "macro_f1": 0.1146,
            }
        },
        "setup": {**setup, "seconds (with feature extraction)": baseline_secs},
    }

    # Figure 1: K-Means on the test speakers, centres and PCA fitted on their split-1 part.
    t0 = time.perf_counter()
    ids = list(dict.fromkeys(fit_ids + test_ids))
    with bar("embeddings", len(ids)) as advance:
        emb = embed_ids(model, root, ids, progress=advance)
    if len(emb.ids) != len(ids):
        raise CorpusError(f"{len(ids) - len(emb.ids)} utterance(s) could not be embedded")
    vec = emb.embeddings / np.linalg.norm(emb.embeddings, axis=1, keepdims=True)
    vectors = {
        "embeddings": dict(zip(emb.ids, vec, strict=True)),
        "mean log-Mel": {i: feats[i] for i in ids},
    }
    figure, images = _figure_one(vectors, fit_ids, test_ids, out_dir, model.model_id, preset, seed)
    sections["Figure 1: K-Means clusters vs true speakers (PCA plane)"] = {
        "results": figure,
        "setup": {
            **setup,
            "model id": model.model_id,
            "embeddings": "length-normalised, full utterances",
            "K-Means": f"K = test speakers, centres learnt on at most "
            f"{preset.fit_per_speaker} split-1 utterances a test speaker, 10 inits",
            "PCA": f"2 components fitted on at most {preset.pca_fit} of those",
            "seconds (with embedding)": round(time.perf_counter() - t0, 1),
        },
    }
    sections["Not in this report yet"] = NOT_YET
    report: dict[str, Any] = {
        "title": "Speaker Recognition in the Wild: data, baseline and Figure 1",
        "corpus": str(root),
        "preset": asdict(preset),
        **sections,
        "total seconds": round(time.perf_counter() - started, 1),
    }
    run = {
        "command": command,
        "seed": seed,
        "corpus": str(root),
        "preset": preset.name,
        "total seconds": report["total seconds"],
    }
    markdown = _markdown(report["title"], {"Run": run, **sections}, images)
    write_report(out_dir, report, markdown)
    return report


__all__ = ["PRESETS", "PaperPreset", "find_meta", "paper_report"]
