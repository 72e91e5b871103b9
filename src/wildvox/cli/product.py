"""``wildvox verify / enroll / identify / speakers``: recognition with the shipped model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from wildvox.api import SpeakerModel, load_model
from wildvox.audio.io import AudioError
from wildvox.cli.common import console, fail
from wildvox.inference.model_io import ModelFileError
from wildvox.store.schema import StoreError

MODEL_OPT = typer.Option(None, "--model", help="Exported model folder (default: shipped model).")
STORE_OPT = typer.Option(None, "--store", help="Speaker store file (default: $WILDVOX_STORE).")
POINT_OPT = typer.Option(
    "eer", "--operating-point", "-p", help="eer, min-dcf, bayes, far=1%, far=0.1%, far=X%, frr=X%."
)
JSON_OPT = typer.Option(False, "--json", help="Print JSON for scripts.")

speakers_app = typer.Typer(help="List, show, remove, export and import enrolled speakers.")


def _open(model: Path | None, store: Path | None) -> SpeakerModel:
    try:
        return load_model(model, store=store)
    except ModelFileError as exc:
        fail(str(exc))
        raise


def _emit(payload: dict[str, Any], as_json: bool, table: Table | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=float))
    elif table is not None:
        console.print(table)


def verify(
    a: Path = typer.Argument(..., help="First recording."),
    b: Path = typer.Argument(..., help="Second recording."),
    operating_point: str = POINT_OPT,
    model: Path | None = MODEL_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Same speaker? Prints the score, the calibrated LLR and accept/reject."""
    m = _open(model, None)
    try:
        v = m.verify(a, b, operating_point)
    except (AudioError, ValueError, ModelFileError) as exc:
        fail(str(exc))
        raise
    table = Table(f"score ({m.scoring})", "cosine", "LLR", "threshold (LLR)", "decision", "note")
    decision = "[green]accept[/]" if v.accept else "[red]reject[/]"
    table.add_row(f"{v.score:.4f}", f"{v.cosine:.4f}", f"{v.llr:.2f}",
                  f"{v.threshold:.2f} ({v.operating_point})", decision, v.note)  # fmt: skip
    _emit(asdict(v), as_json, table)


def enroll(
    name: str = typer.Argument(..., help="Speaker name."),
    files: list[Path] = typer.Argument(..., help="One or more recordings of the speaker."),
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Enroll (or add recordings to) a speaker; nothing is written if any file is bad."""
    m = _open(model, store)
    try:
        count = m.enroll(name, list(files))
    except (AudioError, ValueError, StoreError) as exc:
        fail(str(exc))
        raise
    finally:
        m.close()
    if as_json:
        typer.echo(json.dumps({"speaker": name, "utterances": count}))
    else:
        console.print(f"enrolled {name!r}: {count} utterance(s) in {m.store_path}")


def identify(
    file: Path = typer.Argument(..., help="Recording to identify."),
    top_k: int = typer.Option(5, "--top-k", "-k"),
    operating_point: str = POINT_OPT,
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Who is speaking? Top-k enrolled speakers, or "unknown" below the threshold."""
    m = _open(model, store)
    try:
        r = m.identify(file, top_k=top_k, operating_point=operating_point)
    except (AudioError, ValueError, StoreError, ModelFileError) as exc:
        fail(str(exc))
        raise
    finally:
        m.close()
    title = f"answer: {r.speaker or 'unknown'}"
    table = Table("rank", "speaker", f"score ({m.scoring})", "cosine", "LLR", title=title)
    for i, c in enumerate(r.candidates, 1):
        table.add_row(str(i), c.name, f"{c.score:.4f}", f"{c.cosine:.4f}", f"{c.llr:.2f}")
    if r.note and not as_json:
        console.print(f"[yellow]{r.note}[/]")
    _emit(asdict(r), as_json, table)


@speakers_app.command("list")
def speakers_list(
    model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT, as_json: bool = JSON_OPT
) -> None:
    """Every enrolled speaker with utterance count and total duration."""
    m = _open(model, store)
    try:
        records = m.store().list_speakers()
    except StoreError as exc:
        fail(str(exc))
        raise
    finally:
        m.close()
    table = Table("speaker", "utterances", "seconds")
    for r in records:
        table.add_row(r.name, str(r.num_utterances), f"{r.total_duration:.1f}")
    _emit({"speakers": [asdict(r) for r in records]}, as_json, table)


@speakers_app.command("show")
def speakers_show(
    name: str, model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT,
    as_json: bool = JSON_OPT,
) -> None:  # fmt: skip
    """One speaker's enrolment utterances."""
    m = _open(model, store)
    try:
        utts = m.store().utterances(name)
    except (StoreError, KeyError) as exc:
        fail(str(exc))
        raise
    finally:
        m.close()
    table = Table("source", "seconds", title=name)
    for src, dur in zip(utts.sources, utts.durations.tolist(), strict=True):
        table.add_row(src, f"{dur:.2f}")
    _emit({"speaker": name, "sources": utts.sources, "durations": utts.durations.tolist()},
          as_json, table)  # fmt: skip


@speakers_app.command("remove")
def speakers_remove(
    name: str, model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT
) -> None:
    """Delete a speaker and its utterances."""
    m = _open(model, store)
    try:
        m.store().remove(name)
    except (StoreError, KeyError) as exc:
        fail(str(exc))
        raise
    finally:
        m.close()
    console.print(f"removed {name!r}")


@speakers_app.command("export")
def speakers_export(
    path: Path, model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT
) -> None:
    """Write every speaker (embeddings, durations, sources, model id) to a file."""
    m = _open(model, store)
    try:
        n = m.store().export(path)
    except StoreError as exc:
        fail(str(exc))
        raise
    finally:
        m.close()
    console.print(f"exported {n} speaker(s) to {path}")


@speakers_app.command("import")
def speakers_import(
    path: Path,
    on_conflict: str = typer.Option("error", help="error, merge or replace."),
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
) -> None:
    """Read speakers exported by the same model into the store."""
    m = _open(model, store)
    try:
        summary = m.store().import_(path, on_conflict=on_conflict)  # type: ignore[arg-type]
    except (StoreError, ValueError) as exc:
        fail(str(exc))
        raise
    finally:
        m.close()
    console.print(f"imported from {path}: {summary}")
