"""The first paper's data section on any VoxCeleb-style corpus: Table I and subset sampling.

*Speaker Recognition in the Wild* trains on 100 VoxCeleb1 speakers drawn at random with the
corpus' gender proportions (official identification splits kept) and verifies on 10 further
speakers. :func:`sample_subset` makes that choice from a meta file, :func:`write_subset_lists`
writes it as VoxCeleb lists (``iden_split.txt``, ``veri_test.txt``), and :func:`table_one`
gives the statistics of the full corpus, the identification set and the verification set.

>>> meta = {f"s{i}": {"gender": "m" if i < 6 else "f"} for i in range(10)}
>>> pick = sample_subset(meta, 5, 2, seed=0)
>>> sorted(meta[s]["gender"] for s in pick.iden)
['f', 'f', 'm', 'm', 'm']
>>> len(pick.veri), set(pick.iden) & set(pick.veri)
(2, set())
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wildvox.audio.io import audio_info
from wildvox.data.corpora.voxceleb import CorpusError, audio_root, read_iden_split, speaker_of
from wildvox.data.files import atomic_write

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".opus", ".ogg", ".m4a", ".mp3")
#: meta columns whose most frequent values Table I lists, in order of preference
CATEGORY_COLUMNS = ("nationality", "language", "source")
Progress = Callable[[int], None]


def corpus_files(root: Path) -> list[str]:
    """Every audio file of a VoxCeleb tree as an id ``speaker/session/file``, sorted.

    Raises:
        CorpusError: no audio file under ``root/wav`` (or ``root``).
    """
    wav = audio_root(root)
    ids = sorted(
        p.relative_to(wav).as_posix()
        for p in wav.glob("*/*/*")
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )
    if not ids:
        raise CorpusError(f"{wav}: no audio files in the <speaker>/<session>/<file> layout")
    return ids


def speakers_with_files(ids: Sequence[str], min_files: int = 2) -> set[str]:
    """Speakers with at least ``min_files`` of the ids (verification needs 2 a speaker)."""
    counts = Counter(speaker_of(i) for i in ids)
    return {s for s, c in counts.items() if c >= min_files}


def durations(root: Path, ids: Sequence[str], progress: Progress | None = None) -> np.ndarray:
    """Length in seconds of each utterance, (N,) float64, from the file headers."""
    wav = audio_root(root)
    out = np.empty(len(ids), dtype=np.float64)
    for i, uid in enumerate(ids):
        out[i] = audio_info(wav / uid).duration
        if progress is not None:
            progress(1)
    return out


def _column(meta: Mapping[str, Mapping[str, str]], name: str) -> str | None:
    """The meta column called ``name`` (any case, padding ignored), or None."""
    first = next(iter(meta.values()), {})
    return next((c for c in first if c.strip().lower() == name), None)


def _gender(meta: Mapping[str, Mapping[str, str]], speaker: str, column: str | None) -> str:
    if column is None or speaker not in meta:
        return "unknown"
    value = meta[speaker][column].strip().lower()
    return {"m": "male", "f": "female", "u": "unknown", "": "unknown"}.get(value, value)


def set_statistics(
    ids: Sequence[str],
    seconds: Mapping[str, float],
    meta: Mapping[str, Mapping[str, str]],
    categories: Mapping[str, Sequence[str]],
    genders_listed: Sequence[str] = ("male", "female"),
) -> dict[str, Any]:
    """One column of Table I: speakers, samples, speaker shares and duration statistics.

    Args:
        ids: the set's utterance ids (``speaker/...``).
        seconds: duration in seconds of each id.
        meta: speaker metadata (:func:`wildvox.data.corpora.voxceleb.read_meta`).
        categories: meta column -> the values whose speaker share is reported.
        genders_listed: the gender values whose speaker share is reported.

    Shares are fractions of the set's speakers (as the paper's Table I gives them).
    """
    speakers = sorted({speaker_of(i) for i in ids})
    if not speakers:
        raise ValueError("an empty set has no statistics")
    n = len(speakers)
    gcol = _column(meta, "gender")
    genders = Counter(_gender(meta, s, gcol) for s in speakers)
    row: dict[str, Any] = {"speakers": n, "samples": len(ids)}
    for g in genders_listed:
        row[f"gender {g}"] = genders.get(g, 0) / n
    for col, values in categories.items():
        counts = Counter(meta[s][col] for s in speakers if s in meta)
        for v in values:
            row[f"{col.strip().lower()} {v}"] = counts.get(v, 0) / n
    d = np.asarray([seconds[i] for i in ids], dtype=np.float64)
    row["seconds mean"] = float(d.mean())
    row["seconds std"] = float(d.std())
    row["hours"] = float(d.sum() / 3600.0)
    return row


def top_categories(
    meta: Mapping[str, Mapping[str, str]], speakers: Collection[str], top: int = 4
) -> dict[str, list[str]]:
    """The ``top`` most frequent values (by speakers) of each category column the meta has."""
    out = {}
    for name in CATEGORY_COLUMNS:
        col = _column(meta, name)
        if col is not None:
            counts = Counter(meta[s][col] for s in speakers if s in meta)
            out[col] = [v for v, _ in counts.most_common(top)]
    return out


def table_one(
    all_ids: Sequence[str],
    iden_ids: Sequence[str],
    veri_ids: Sequence[str],
    seconds: Mapping[str, float],
    meta: Mapping[str, Mapping[str, str]],
    top: int = 4,
) -> dict[str, dict[str, Any]]:
    """Table I: {"full corpus" | "identification set" | "verification set": statistics}.

    The listed category values are the ``top`` most frequent of the full corpus (as the paper
    lists the four most frequent nationalities of the whole dataset).
    """
    speakers = {speaker_of(i) for i in all_ids}
    cats = top_categories(meta, speakers, top)
    gcol = _column(meta, "gender")
    found = {_gender(meta, s, gcol) for s in speakers}
    genders = ["male", "female", *sorted(found - {"male", "female", "unknown"})]
    genders += ["unknown"] if "unknown" in found else []
    return {
        name: set_statistics(ids, seconds, meta, cats, genders)
        for name, ids in (
            ("full corpus", all_ids),
            ("identification set", iden_ids),
            ("verification set", veri_ids),
        )
    }


@dataclass(frozen=True)
class SubsetChoice:
    """Speakers drawn for identification (``iden``) and, disjoint, for verification."""

    iden: list[str]
    veri: list[str]
    seed: int


def _stratified(by_gender: dict[str, list[str]], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` speakers, each gender's count proportional to its share (largest remainders)."""
    total = sum(len(v) for v in by_gender.values())
    if n > total:
        raise ValueError(f"asked for {n} speakers but only {total} are available")
    keys = sorted(by_gender)
    exact = np.asarray([n * len(by_gender[k]) / total for k in keys])
    counts = np.floor(exact).astype(np.int64)
    for j in np.argsort(-(exact - counts), kind="stable")[: n - int(counts.sum())]:
        counts[j] += 1
    chosen: list[str] = []
    for k, c in zip(keys, counts.tolist(), strict=True):
        chosen += rng.choice(sorted(by_gender[k]), size=c, replace=False).tolist()
    return sorted(chosen)


def sample_subset(
    meta: Mapping[str, Mapping[str, str]],
    n_iden: int,
    n_veri: int,
    seed: int = 0,
    iden_pool: Collection[str] | None = None,
    veri_pool: Collection[str] | None = None,
) -> SubsetChoice:
    """Draw ``n_iden`` speakers preserving the gender proportions, then ``n_veri`` others.

    Args:
        meta: speaker metadata with a ``gender`` column (any case); without one the draw is
            uniform.
        n_iden: identification speakers (the paper: 100 of VoxCeleb1's 1,251).
        n_veri: further verification speakers (the paper: 10), also gender-stratified.
        seed: the draw's seed.
        iden_pool: speakers eligible for identification (default: every meta speaker), e.g.
            those the identification split lists.
        veri_pool: speakers eligible for verification (default: every meta speaker); the
            identification speakers are always excluded.

    Raises:
        ValueError: fewer eligible speakers than asked for.
    """
    if n_iden < 1 or n_veri < 0:
        raise ValueError(f"need n_iden >= 1 and n_veri >= 0, got {n_iden}, {n_veri}")
    rng = np.random.default_rng(seed)
    gcol = _column(meta, "gender")

    def groups(pool: Collection[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s in pool:
            out.setdefault(_gender(meta, s, gcol), []).append(s)
        return out

    pool = set(meta) if iden_pool is None else set(iden_pool) & set(meta)
    iden = _stratified(groups(pool), n_iden, rng)
    rest = (set(meta) if veri_pool is None else set(veri_pool) & set(meta)) - set(iden)
    veri = _stratified(groups(rest), n_veri, rng) if n_veri else []
    return SubsetChoice(iden=iden, veri=veri, seed=seed)


def subset_trials(
    ids: Sequence[str], per_utterance: int = 2, seed: int = 0
) -> list[tuple[int, str, str]]:
    """VoxCeleb-style trials among ``ids``: for each utterance, ``per_utterance`` target and as
    many non-target test utterances drawn at random (duplicates removed), (label, enrol, test).
    """
    rng = np.random.default_rng(seed)
    spk = np.asarray([speaker_of(i) for i in ids])
    idx = np.arange(len(ids))
    trials: dict[tuple[str, str], int] = {}
    for i in range(len(ids)):
        same = idx[(spk == spk[i]) & (idx != i)]
        other = idx[spk != spk[i]]
        for pool, label in ((same, 1), (other, 0)):
            for j in rng.permutation(pool)[:per_utterance].tolist():
                key = (ids[min(i, j)], ids[max(i, j)])
                trials.setdefault(key, label)
    return [(label, e, t) for (e, t), label in sorted(trials.items())]


def write_subset_lists(
    root: Path,
    choice: SubsetChoice,
    out_dir: Path,
    split_name: str = "iden_split.txt",
    per_utterance: int = 2,
) -> tuple[Path, Path]:
    """Write ``iden_split.txt`` (the corpus' own split of the identification speakers) and
    ``veri_test.txt`` (trials among every file of the verification speakers) into ``out_dir``.

    Raises:
        CorpusError: an identification speaker the split file does not list, or a
            verification speaker with fewer than 2 files.
    """
    rows = read_iden_split(root / split_name)
    wanted = set(choice.iden)
    kept = [(s, rel) for s, rel in rows if speaker_of(rel) in wanted]
    missing = wanted - {speaker_of(rel) for _, rel in kept}
    if missing:
        raise CorpusError(f"{root / split_name}: no utterances of {sorted(missing)[:5]}")
    wav = audio_root(root)
    veri_ids: list[str] = []
    for s in choice.veri:
        files = sorted(
            p.relative_to(wav).as_posix()
            for p in (wav / s).glob("*/*")
            if p.suffix.lower() in AUDIO_SUFFIXES
        )
        if len(files) < 2:
            raise CorpusError(f"{wav / s}: a verification speaker needs >= 2 files")
        veri_ids += files
    iden_path, veri_path = out_dir / "iden_split.txt", out_dir / "veri_test.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(iden_path, "".join(f"{s} {rel}\n" for s, rel in kept))
    trials = subset_trials(veri_ids, per_utterance, choice.seed) if choice.veri else []
    atomic_write(veri_path, "".join(f"{lab} {e} {t}\n" for lab, e, t in trials))
    logger.info("subset: %d identification utterances, %d trials", len(kept), len(trials))
    return iden_path, veri_path
