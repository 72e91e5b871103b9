"""A tiny wildmix slice and a tiny recipe for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

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


def make_slice(wildmix: Path, tmp: Path, speakers: int = 6, per_speaker: int = 8) -> Path:
    """Write an iden_split-format list of the first utterances of GCompris speakers."""
    chosen: dict[str, list[str]] = {}
    for line in (wildmix / "iden_split.txt").read_text().splitlines():
        split, rel = line.split()
        spk = rel.split("/", 1)[0]
        if split != "1" or not spk.startswith("gc"):
            continue
        if len(chosen) < speakers or spk in chosen:
            chosen.setdefault(spk, [])
            if len(chosen[spk]) < per_speaker:
                chosen[spk].append(rel)
    path = tmp / "iden_split_tiny.txt"
    path.write_text("".join(f"1 {r}\n" for rels in chosen.values() for r in rels))
    return path


def tiny_config(wildmix: Path, tmp: Path, extra: list[str] | None = None) -> Config:
    lst = make_slice(wildmix, tmp)
    overrides = [*TINY, f"dataset.train=[{{root: {wildmix}, list: {lst}, splits: [1]}}]"]
    return load_config(None, overrides + (extra or []), data_root=str(wildmix))
