"""``wildvox embed``, ``wildvox score`` and ``wildvox evaluate``: the file-based steps."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from wildvox.audio.io import AudioError
from wildvox.cli.common import console, fail, progress_bar, resolve_data, setup_logging
from wildvox.data.corpora.voxceleb import audio_root
from wildvox.data.trials import TrialError, read_trials
from wildvox.inference.extract import extract_embeddings
from wildvox.inference.model_io import ModelFileError, load_exported
from wildvox.metrics.verification import verification_report
from wildvox.reports.evaluation import evaluate_identification, evaluate_verification
from wildvox.scoring.embeddings import load_embeddings, save_embeddings
from wildvox.scoring.score_file import read_score_file, write_score_file

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


def _load_model(model: Path):  # type: ignore[no-untyped-def]
    try:
        return load_exported(model)
    except ModelFileError as exc:
        fail(str(exc))


def collect_inputs(inputs: list[Path]) -> list[tuple[str, Path]]:
    """(id, path) for files and for audio files found under directories (id relative to it)."""
    found: list[tuple[str, Path]] = []
    for item in inputs:
        if item.is_dir():
            for p in sorted(item.rglob("*")):
                if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                    found.append((p.relative_to(item).as_posix(), p))
        else:
            found.append((item.as_posix(), item))
    return found


def embed(
    inputs: list[Path] = typer.Argument(None, help="Audio files or folders."),
    model: Path = typer.Option(..., help="Exported model folder (runs/<name>/model)."),
    output: Path = typer.Option(..., "-o", "--output", help="Embedding file (.npz)."),
    trials: Path | None = typer.Option(None, help="Embed every utterance of this trial list."),
    data: Path | None = typer.Option(None, help="Corpus root for --trials ids."),
    workers: int = typer.Option(1, help="Decoding worker processes."),
) -> None:
    """Embed audio files (full length, batched by length) into an .npz with utterance ids."""
    setup_logging()
    net = _load_model(model)
    if trials is not None:
        root = audio_root(resolve_data(data))
        try:
            ids = read_trials(trials).utterances()
        except TrialError as exc:
            fail(str(exc))
        items = [(i, root / i) for i in ids]
    else:
        items = collect_inputs(inputs or [])
    if not items:
        fail("no audio files given")
    cfg = net.config
    with progress_bar("embedding", len(items)) as advance:
        try:
            ext = extract_embeddings(
                net.net,
                [str(p) for _, p in items],
                cfg,
                num_workers=workers,
                on_error="skip",
                progress=advance,
            )
        except AudioError as exc:
            fail(str(exc))
    for path, reason in ext.failed:
        console.print(
            f"[yellow]skipped[/] {reason if reason.startswith(path) else path + ': ' + reason}"
        )
    if not ext.ok:
        fail("no file could be embedded")
    save_embeddings(output, [items[i][0] for i in ext.ok], ext.embeddings, ext.durations)
    console.print(f"{len(ext.ok)} embeddings ({ext.embeddings.shape[1]}-d) -> {output}")
    if ext.failed:
        raise typer.Exit(1)


def score(
    embeddings: Path = typer.Option(..., help="Embedding file from `wildvox embed`."),
    trials: Path = typer.Option(..., help="Trial list (VoxCeleb format)."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Score file: enrol test score [label]."
    ),
) -> None:
    """Cosine-score a trial list."""
    from wildvox.scoring.cosine import score_trials

    try:
        emb = load_embeddings(embeddings)
        tr = read_trials(trials)
        scores = score_trials(emb, tr.enroll, tr.test)
        write_score_file(output, tr.enroll, tr.test, scores, tr.labels)
    except (ValueError, KeyError, OSError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    console.print(f"{len(scores)} scores -> {output}")


def evaluate(
    scores: Path | None = typer.Argument(None, help="Labeled score file from `wildvox score`."),
    model: Path | None = typer.Option(None, help="Evaluate this model on --data instead."),
    data: Path | None = typer.Option(None, help="Corpus root (VoxCeleb layout)."),
    trials: str = typer.Option("veri_test.txt", help="Trial list inside the corpus root."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """EER and MinDCF of a score file, or verification + identification of a model on a corpus."""
    setup_logging()
    result: dict[str, object]
    if scores is not None:
        try:
            sf = read_score_file(scores)
            result = dict(verification_report(sf.scores, sf.require_labels()))
        except (OSError, ValueError) as exc:
            fail(str(exc))
    elif model is not None:
        net = _load_model(model)
        root = resolve_data(data)
        ver = evaluate_verification(net, root, trials)
        result = {"verification": ver.metrics, "identification": evaluate_identification(net, root)}
    else:
        fail("give a score file or --model")
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(result)
