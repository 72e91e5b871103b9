"""Readers for VoxCeleb's own list formats (also used by wildmix and wildextra).

Layout: ``<root>/wav/<speaker>/<session>/<utt>.<ext>`` with list files beside ``wav/``:

- ``iden_split.txt``: ``<split> <path>`` (1 = train, 2 = validation, 3 = test);
- ``dev_list.txt`` / voxceleb_trainer's ``train_list.txt``: ``<speaker> <path>``;
- ``vox1_meta.csv`` (tab-separated), ``vox2_meta.csv`` or wildmix ``meta.csv`` (comma-separated).

Paths in lists are relative to ``wav/``. A VoxCeleb2 ``dev/aac`` tree works the same way when
``root`` points at the folder that holds the list and ``wav/`` (or the audio folder itself).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from wildvox.config import Config, CorpusConfig
from wildvox.data.manifest import Utterance

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CorpusError(ValueError):
    """A corpus folder or list file that cannot be read as described."""


def audio_root(root: Path) -> Path:
    """The folder list paths are relative to: ``root/wav`` when it exists, else ``root``."""
    wav = root / "wav"
    return wav if wav.is_dir() else root


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read list file ({exc.strerror})") from exc
    pairs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise CorpusError(f"{path}:{lineno}: expected 2 fields, got {len(fields)}: {line!r}")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise CorpusError(f"{path}: list file is empty")
    return pairs


def read_speaker_list(path: Path) -> list[tuple[str, str]]:
    """``<speaker> <path>`` lines -> [(speaker, path)]."""
    return _read_pairs(path)


def read_iden_split(path: Path) -> list[tuple[int, str]]:
    """``<split> <path>`` lines (VoxCeleb1 ``iden_split.txt``) -> [(split, path)]."""
    out = []
    for split, rel in _read_pairs(path):
        if split not in ("1", "2", "3"):
            raise CorpusError(f"{path}: split must be 1, 2 or 3, got {split!r} for {rel}")
        out.append((int(split), rel))
    return out


def speaker_of(rel_path: str) -> str:
    """The speaker id of a VoxCeleb relative path (its first component)."""
    return rel_path.split("/", 1)[0]


def speakers_of_ids(ids: Sequence[str]) -> np.ndarray:
    """Speaker label of each ``speaker/...`` utterance id, (N,) str; ``ValueError`` otherwise.

    >>> speakers_of_ids(["id1/a/1.wav", "id2/b/2.wav"]).tolist()
    ['id1', 'id2']
    """
    bad = [i for i in ids if "/" not in i]
    if bad:
        raise ValueError(f"{len(bad)} id(s) have no 'speaker/' prefix, e.g. {bad[:3]}")
    return np.asarray([speaker_of(i) for i in ids])


def cap_per_speaker(
    items: Sequence[T], speakers: Sequence[str], limit: int, seed: int = 0
) -> list[T]:
    """At most ``limit`` items of each speaker, drawn at random with ``seed``, in input order.

    The one per-speaker cap of wildvox (calibration sets, AS-Norm cohorts, back-end reports).

    >>> cap_per_speaker(["a1", "a2", "a3", "b1"], ["a", "a", "a", "b"], 2)
    ['a1', 'a3', 'b1']
    """
    if limit < 1:
        raise ValueError(f"the per-speaker limit must be >= 1, got {limit}")
    if len(items) != len(speakers):
        raise ValueError(f"{len(items)} items but {len(speakers)} speaker labels")
    rng = np.random.default_rng(seed)
    by_spk: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by_spk.setdefault(s, []).append(i)
    keep = sorted(j for idx in by_spk.values() for j in rng.permutation(idx)[:limit].tolist())
    return [items[i] for i in keep]


def select_training_ids(
    root: Path, split_name: str = "iden_split.txt", per_speaker: int = 20, seed: int = 0
) -> list[str]:
    """Split-1 utterance ids of an identification list, at most ``per_speaker`` per speaker."""
    if per_speaker < 2:
        raise ValueError(f"per_speaker must be >= 2, got {per_speaker}")
    utts = [u for u in load_iden_split(root, split_name) if u.split == 1]
    return sorted(u.id for u in cap_per_speaker(utts, [u.speaker for u in utts], per_speaker, seed))


def read_meta(path: Path) -> dict[str, dict[str, str]]:
    """A speaker metadata CSV -> {speaker id: {column: value}}.

    Accepts VoxCeleb1's tab-separated ``vox1_meta.csv``, VoxCeleb2's ``vox2_meta.csv`` (comma
    separated, padded column names) and wildmix ``meta.csv``. The speaker id is the first column.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read metadata ({exc.strerror})") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise CorpusError(f"{path}: metadata file is empty")
    delimiter = "\t" if "\t" in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    meta: dict[str, dict[str, str]] = {}
    for row in rows[1:]:
        values = [v.strip() for v in row]
        if len(values) != len(header):
            raise CorpusError(f"{path}: row {row!r} has {len(values)} fields, header {len(header)}")
        meta[values[0]] = dict(zip(header, values, strict=True))
    return meta


def load_corpus(cfg: CorpusConfig, check_files: bool = True) -> list[Utterance]:
    """The utterances a :class:`CorpusConfig` selects, with corpus-qualified speaker labels."""
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder does not exist")
    list_path = root / cfg.list
    name = cfg.name or root.resolve().name
    wav = audio_root(root)
    if Path(cfg.list).name.startswith("iden_split"):
        wanted = set(cfg.splits)
        rows = [
            (speaker_of(rel), rel, split)
            for split, rel in read_iden_split(list_path)
            if split in wanted
        ]
    else:
        rows = [(spk, rel, 0) for spk, rel in read_speaker_list(list_path)]
    include, exclude = set(cfg.include_speakers), set(cfg.exclude_speakers)
    for spk in sorted((include | exclude) - {r[0] for r in rows}):
        raise CorpusError(f"{list_path}: speaker {spk!r} named in the recipe is not in the list")
    rows = [r for r in rows if (not include or r[0] in include) and r[0] not in exclude]
    if cfg.max_utts_per_speaker > 0:
        taken: Counter[str] = Counter()
        kept = []
        for row in rows:
            taken[row[0]] += 1
            if taken[row[0]] <= cfg.max_utts_per_speaker:
                kept.append(row)
        rows = kept
    utts = [
        Utterance(id=rel, path=wav / rel, speaker=f"{name}/{spk}", corpus=name, split=split)
        for spk, rel, split in rows
    ]
    if not utts:
        raise CorpusError(f"{list_path}: no utterances selected (splits {cfg.splits})")
    if check_files:
        missing = [u for u in utts if not u.path.is_file()]
        if missing:
            examples = ", ".join(str(u.path) for u in missing[:3])
            raise CorpusError(
                f"{list_path}: {len(missing)} listed files are missing, e.g. {examples}"
            )
    logger.info(
        "%s: %d utterances of %d speakers", list_path, len(utts), len({u.speaker for u in utts})
    )
    return utts


def load_iden_split(root: Path, list_name: str = "iden_split.txt") -> list[Utterance]:
    """Every utterance of an identification split file, with its split number."""
    cfg = CorpusConfig(root=str(root), list=list_name, splits=(1, 2, 3))
    return load_corpus(cfg)


def training_data(cfg: Config) -> tuple[list[Utterance], list[Utterance]]:
    """Training utterances of every configured corpus, and the evaluation corpus' validation part
    (split 2 of its ``iden_split``), when that file exists."""
    train: list[Utterance] = []
    for corpus in cfg.dataset.train:
        train += load_corpus(corpus)
    val: list[Utterance] = []
    root = Path(cfg.data)
    if cfg.data and (root / cfg.eval.iden_split).is_file():
        val = [u for u in load_iden_split(root, cfg.eval.iden_split) if u.split == 2]
    return train, val
