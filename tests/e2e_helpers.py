"""A tiny wildmix slice and a tiny recipe for end-to-end tests."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from wildvox.config import Config, load_config

TINY = [
    "model.backbone=resnet34_se",
    "model.backbone_args={base_channels: 4, layers: [1, 1, 1, 1]}",
    "model.embed_dim=32",
    "head.name=sc_aam",
    "train.epochs=2",
    "train.batch_size=8",
    "train.num_threads=1",
    "train.val_max_utts=8",
    "dataset.crop_seconds=0.5",
    "dataset.num_workers=0",
    "eval.batch_seconds=20",
]


def _gcompris_split(wildmix: Path, split: str, speakers: int) -> dict[str, list[str]]:
    """The utterances of ``split`` of the first ``speakers`` GCompris speakers of split 1."""
    rows = [line.split() for line in (wildmix / "iden_split.txt").read_text().splitlines()]
    names: list[str] = []
    for s, rel in rows:
        spk = rel.split("/", 1)[0]
        if s == "1" and spk.startswith("gc") and spk not in names and len(names) < speakers:
            names.append(spk)
    out: dict[str, list[str]] = {n: [] for n in names}
    for s, rel in rows:
        spk = rel.split("/", 1)[0]
        if s == split and spk in out:
            out[spk].append(rel)
    return out


def make_slice(
    wildmix: Path, tmp: Path, speakers: int = 6, per_speaker: int = 8, spread: bool = False
) -> Path:
    """Write an iden_split-format list of ``per_speaker`` training utterances of each of the
    first ``speakers`` GCompris speakers: the first ones, or (``spread``) evenly spaced over the
    speaker's list, so that every recording session of the speaker is in it."""
    chosen = {}
    for spk, rels in _gcompris_split(wildmix, "1", speakers).items():
        if spread:
            idx = np.unique(np.linspace(0, len(rels) - 1, per_speaker).round().astype(int))
            chosen[spk] = [rels[i] for i in idx]
        else:
            chosen[spk] = rels[:per_speaker]
    path = tmp / "iden_split_tiny.txt"  # the name tells load_corpus the list's format
    path.write_text("".join(f"1 {r}\n" for rels in chosen.values() for r in rels))
    return path


def held_out_trials(wildmix: Path, tmp: Path, speakers: int = 6, per_speaker: int = 10) -> Path:
    """Write a trial list of every pair of the first ``per_speaker`` test-part (split 3)
    utterances of the speakers :func:`make_slice` trains on: utterances training never saw."""
    utts = [
        r for rels in _gcompris_split(wildmix, "3", speakers).values() for r in rels[:per_speaker]
    ]
    lines = [
        f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}\n"
        for a, b in itertools.combinations(utts, 2)
    ]
    path = tmp / "held_out_trials.txt"
    path.write_text("".join(lines))
    return path


def tiny_config(
    wildmix: Path,
    tmp: Path,
    extra: list[str] | None = None,
    per_speaker: int = 8,
    spread: bool = False,
) -> Config:
    lst = make_slice(wildmix, tmp, per_speaker=per_speaker, spread=spread)
    overrides = [*TINY, f"dataset.train=[{{root: {wildmix}, list: {lst}, splits: [1]}}]"]
    return load_config(None, overrides + (extra or []), data_root=str(wildmix))
