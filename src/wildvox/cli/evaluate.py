"""``wildvox embed``, ``wildvox score`` and ``wildvox evaluate``: the file-based steps."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from wildvox.audio.io import AudioError
from wildvox.cli.common import (
    check_device,
    clean,
    console,
    fail,
    listed_path,
    out,
    progress_bar,
    resolve_data,
    setup_logging,
    shown,
)
from wildvox.data.corpora.voxceleb import audio_root
from wildvox.data.trials import TrialError, read_trials
from wildvox.inference.extract import extract_embeddings
from wildvox.inference.model_io import ModelFileError, load_exported
from wildvox.metrics.verification import verification_report
from wildvox.reports.evaluation import evaluate_identification, evaluate_verification
from wildvox.scoring.embeddings import EmbeddingFileError, load_embeddings, save_embeddings
from wildvox.scoring.score_file import read_score_file, write_score_file

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


DEVICE_OPT = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N.")


def _load_model(model: Path | None, device: str = "cpu"):  # type: ignore[no-untyped-def]
    from wildvox.api import PRETRAINED

    try:
        return load_exported(model or PRETRAINED, device=check_device(device))
    except (ModelFileError, RuntimeError) as exc:  # RuntimeError: no such CUDA device
        fail(str(exc))


def collect_inputs(inputs: list[Path]) -> list[tuple[str, Path]]:
    """(id, path) for files and for audio files found under directories: the id is the path
    relative to the folder, prefixed by the folder's name when several inputs are given.
    Two inputs with one id are an error, found before any work."""
    found: list[tuple[str, Path]] = []
    for item in inputs:
        if item.is_dir():
            prefix = f"{item.resolve().name}/" if len(inputs) > 1 else ""
            for p in sorted(item.rglob("*")):
                if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                    found.append((prefix + p.relative_to(item).as_posix(), p))
        else:
            found.append((item.as_posix(), item))
    twice = [i for i, n in Counter(i for i, _ in found).items() if n > 1]
    if twice:
        paths = [str(p) for i, p in found if i == twice[0]]
        fail(f"{len(twice)} id(s) name several files, e.g. {twice[0]!r}: {', '.join(paths)} "
             "(give folders with different names, or embed them separately)")  # fmt: skip
    return found


def embed(
    inputs: list[Path] = typer.Argument(None, help="Audio files or folders."),
    model: Path | None = typer.Option(
        None, help="Exported model folder (runs/<name>/model; default: the shipped model)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Embedding file (.npz)."),
    trials: Path | None = typer.Option(
        None,
        help="Embed every utterance of this trial list (audio next to it, in its wav/ "
        "folder, else under --data).",
    ),
    data: Path | None = typer.Option(None, help="Corpus root for --trials ids."),
    workers: int = typer.Option(1, help="Decoding worker processes."),
    device: str = DEVICE_OPT,
    segments: bool = typer.Option(
        False,
        "--segments",
        help="One file: per-window embeddings (3 s windows every 1.5 s, with start/end "
        "times; any length, decoded in blocks) instead of one embedding.",
    ),
) -> None:
    """Embed audio files (full length, batched by length) into an .npz with utterance ids.
    Ids are unique: several folders' files are named folder/relative-path."""
    setup_logging()
    if segments:
        _embed_segments(inputs or [], model, output, device)
        return
    if trials is not None:
        try:
            ids = read_trials(trials).utterances()
        except TrialError as exc:
            fail(str(exc))
        first = listed_path(ids[0], trials)
        fallback = None if first.exists() else audio_root(resolve_data(data))
        items = [(i, listed_path(i, trials, fallback)) for i in ids]
    else:
        items = collect_inputs(inputs or [])
    if not items:
        fail("no audio files given")
    if output.is_dir() or (output.parent.exists() and not output.parent.is_dir()):
        fail(f"{output}: not a file path for the embeddings (give e.g. emb.npz)")
    net = _load_model(model, device)
    cfg = net.config
    with progress_bar("embedding", len(items)) as advance:
        try:
            ext = extract_embeddings(
                net.net,
                [str(p) for _, p in items],
                cfg,
                num_workers=workers,
                device=device,
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
    try:
        save_embeddings(output, [items[i][0] for i in ext.ok], ext.embeddings, ext.durations)
    except (EmbeddingFileError, OSError) as exc:
        fail(str(exc))
    out.print(f"{len(ext.ok)} embeddings ({ext.embeddings.shape[1]}-d) -> {output}",
              highlight=False)  # fmt: skip
    if ext.failed:
        raise typer.Exit(1)


def score(
    embeddings: Path = typer.Option(..., help="Embedding file from `wildvox embed`."),
    trials: Path = typer.Option(..., help="Trial list (VoxCeleb format)."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Score file: enrol test score [label]."
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="Score as this model folder does (AS-Norm against its cohort "
        "when it ships one) instead of plain cosine; the embeddings must be its own.",
    ),
) -> None:
    """Score a trial list: cosine, or with --model the model's own scoring."""
    from wildvox.scoring.cosine import score_trials

    try:
        emb = load_embeddings(embeddings)
        tr = read_trials(trials)
        if model is None:
            scores = score_trials(emb, tr.enroll, tr.test)
            how = "cosine"
        else:
            from wildvox.api import load_model

            m = load_model(model, backend="torch")
            if emb.dim != m.embed_dim:
                fail(f"{embeddings}: {emb.dim}-d embeddings, but {model} embeds in "
                     f"{m.embed_dim}-d: embed with `wildvox embed --model {model}`")  # fmt: skip
            scores = m.score(emb.embeddings[emb.index(tr.enroll)],
                             emb.embeddings[emb.index(tr.test)])  # fmt: skip
            how = m.scoring
        write_score_file(output, tr.enroll, tr.test, scores, tr.labels)
    except (ValueError, KeyError, OSError, ModelFileError) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    out.print(f"{len(scores)} {how} scores -> {output}", highlight=False)


def evaluate(
    scores: Path | None = typer.Argument(None, help="Labeled score file from `wildvox score`."),
    model: Path | None = typer.Option(None, help="Evaluate this model on --data instead."),
    data: Path | None = typer.Option(None, help="Corpus root (VoxCeleb layout)."),
    trials: str = typer.Option("veri_test.txt", help="Trial list inside the corpus root."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    device: str = DEVICE_OPT,
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
        net = _load_model(model, device)
        root = resolve_data(data)
        ver = evaluate_verification(net, root, trials)
        result = {"verification": ver.metrics, "identification": evaluate_identification(net, root)}
    else:
        fail("give a score file or --model")
    if json_out:
        typer.echo(json.dumps(clean(result), indent=2))
    else:
        out.print(_table(result))


def _table(result: dict[str, Any]) -> Table:
    """One row per figure: rates (EER, top-k) in %, costs to 4 decimals, counts as integers."""
    table = Table("section", "measure", "value")
    sections = result if all(isinstance(v, dict) for v in result.values()) else {"": result}
    for section, figures in sections.items():
        for key, value in figures.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or isinstance(value, int)
            ):
                text = str(value)
            elif key == "eer" or key.startswith("top") or key.startswith("chance"):
                text = f"{100 * value:.2f} %"
            else:
                text = f"{value:.4f}"
            table.add_row(shown(section), shown(key), text)
    return table


def _embed_segments(inputs: list[Path], model: Path | None, output: Path, device: str) -> None:
    """``embed FILE --segments``: :meth:`SpeakerModel.embed_segments` of one recording,
    written as :class:`wildvox.diarize.segments.Segments` (``starts``, ``ends``,
    ``embeddings``, ``duration``)."""
    from wildvox.api import load_model
    from wildvox.inference.model_io import ModelFileError

    if len(inputs) != 1 or inputs[0].is_dir():
        fail("--segments takes exactly one audio file")
    if output.is_dir() or (output.parent.exists() and not output.parent.is_dir()):
        fail(f"{output}: not a file path for the embeddings (give e.g. segments.npz)")
    check_device(device)
    try:
        m = load_model(model, device=device)
        segs = m.embed_segments(inputs[0])
        segs.save(output)
    except (ModelFileError, AudioError, ValueError, OSError) as exc:
        fail(str(exc))
    out.print(f"{len(segs)} windows ({segs.embeddings.shape[1]}-d) -> {output}", highlight=False)
