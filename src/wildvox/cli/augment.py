"""``wildvox augment``: offline augmentation of a recipe's training corpora.

Writes augmented copies (FLAC) of every training utterance under ``OUT/<corpus name>/wav/`` and a
``train_list.txt`` (``<speaker> <path relative to wav/>``) beside it, which a recipe includes as
one more corpus with the same ``name``, so the copies keep their original speaker labels::

    dataset:
      train:
        - {root: ${data}, list: iden_split.txt, splits: [1]}
        - {root: OUT/wildmix, list: train_list.txt, name: wildmix}
"""

from __future__ import annotations

from pathlib import Path

import typer

from wildvox.augment.offline import materialize
from wildvox.cli.common import console, fail, resolve_data, setup_logging
from wildvox.config import ConfigError, load_config
from wildvox.data.corpora.voxceleb import CorpusError, load_corpus
from wildvox.data.files import atomic_write

LIST_NAME = "train_list.txt"


def augment(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder of the augmented corpora."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Recipe YAML."),
    data: Path | None = typer.Option(None, help="Evaluation corpus root (VoxCeleb layout)."),
    set_: list[str] = typer.Option([], "--set", help="Override, e.g. augment.reverb=0."),
    copies: int | None = typer.Option(
        None, help="Copies per utterance, kinds drawn by weight (default: one per enabled kind)."
    ),
    speed_as_new_speaker: bool = typer.Option(
        False, help="Label speed-perturbed copies as new speakers (<speaker>@sp0.9)."
    ),
    workers: int = typer.Option(1, help="Processes writing files."),
    seed: int | None = typer.Option(None, help="Seed of all draws (default train.seed)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write augmented copies of the recipe's training data (its ``augment`` settings)."""
    setup_logging(verbose)
    try:
        cfg = load_config(config, set_, data_root=str(resolve_data(data)))
    except ConfigError as exc:
        fail(str(exc))
    if not cfg.augment.weights():
        fail("every augmentation kind has weight 0 in the recipe's augment section")
    corpora: dict[str, list[tuple[str, str]]] = {}
    try:
        for corpus in cfg.dataset.train:
            for utt in load_corpus(corpus):
                speaker = utt.speaker[len(utt.corpus) + 1 :]  # labels are "<corpus>/<speaker>"
                corpora.setdefault(utt.corpus, []).append((speaker, str(utt.path)))
    except CorpusError as exc:
        fail(str(exc))
    rng_seed = cfg.train.seed if seed is None else seed
    for name, items in corpora.items():
        target = out / name
        try:
            written = materialize(
                items,
                target,
                cfg.augment,
                rng_seed=rng_seed,
                copies_per_utt=copies,
                speed_as_new_speaker=speed_as_new_speaker,
                num_workers=workers,
                sample_rate=cfg.features.sample_rate,
            )
        except (ValueError, FileNotFoundError) as exc:
            fail(f"{name}: {exc}")
        wav_root = (target / "wav").resolve()
        lines = [f"{spk} {Path(path).relative_to(wav_root).as_posix()}\n" for spk, path in written]
        atomic_write(target / LIST_NAME, "".join(lines))
        console.print(
            f"{name}: {len(written)} augmented copies of {len(items)} utterances -> {target}\n"
            f"  add to dataset.train: {{root: {target.resolve()}, list: {LIST_NAME}, name: {name}}}"
        )
