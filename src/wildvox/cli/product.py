"""``wildvox verify / enroll / identify / speakers``: recognition with the shipped model.

Every user error ends in one ``error:`` line and exit status 2, never a traceback; every string
a user chose (speaker names, paths, recording sources) reaches the terminal through
:func:`~wildvox.cli.common.shown`, so markup, emoji codes and terminal escapes in it are shown
literally. Nothing is printed between a store write and the end of its command that could fail.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.table import Table
from rich.text import Text

from wildvox.api import MAX_SECONDS, SpeakerModel, load_model
from wildvox.audio.io import AudioError
from wildvox.cli.common import console, fail, printable, shown
from wildvox.inference.model_io import ModelFileError
from wildvox.store import MAX_NAME_LENGTH, StoreError, check_top_k

MODEL_OPT = typer.Option(None, "--model", help="Exported model folder (default: shipped model).")
STORE_OPT = typer.Option(None, "--store", help="Speaker store file (default: $WILDVOX_STORE).")
POINT_OPT = typer.Option(
    "eer", "--operating-point", "-p", help="eer, min-dcf, bayes, far=1%, far=0.1%, far=X%, frr=X%."
)
JSON_OPT = typer.Option(False, "--json", help="Print JSON for scripts.")
MAX_OPT = typer.Option(
    MAX_SECONDS, "--max-seconds", help="Longest recording accepted, in seconds (work bound)."
)

NAMES_HELP = (
    "Names are stored trimmed and NFC-normalised, without zero-width characters, and keep "
    "their case, but are unique regardless of case: 'Alice' finds and adds to 'alice'. "
    f"Control characters, empty names and names over {MAX_NAME_LENGTH} characters are refused."
)
speakers_app = typer.Typer(
    help=f"List, show, remove, export and import enrolled speakers. {NAMES_HELP}"
)


def _fail(exc: BaseException) -> NoReturn:
    """The one-line error for ``exc``, its terminal escapes made visible."""
    fail(printable(exc))


def _open(model: Path | None, store: Path | None, max_seconds: float = MAX_SECONDS) -> SpeakerModel:
    if not max_seconds > 0:
        fail(f"--max-seconds must be > 0, got {max_seconds}")
    try:
        m = load_model(model, store=store)
    except (ModelFileError, ValueError) as exc:
        _fail(exc)
    m.max_seconds = max_seconds
    return m


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
    max_seconds: float = MAX_OPT,
) -> None:
    """Same speaker? Prints the score, the calibrated LLR and accept/reject.

    A recording with too little speech (Silero VAD) is rejected with reliable: false."""
    m = _open(model, None, max_seconds)
    try:
        v = m.verify(a, b, operating_point)
    except (AudioError, ValueError, ModelFileError) as exc:
        _fail(exc)
    table = Table(f"score ({m.scoring})", "cosine", "LLR", "threshold (LLR)", "decision", "note")
    decision = "[green]accept[/]" if v.accept else "[red]reject[/]"
    table.add_row(f"{v.score:.4f}", f"{v.cosine:.4f}", f"{v.llr:.2f}",
                  shown(f"{v.threshold:.2f} ({v.operating_point})"), decision,
                  shown(v.note))  # fmt: skip
    _emit(asdict(v), as_json, table)


def _stored_name(m: SpeakerModel, name: str) -> str:
    """The name ``name`` was stored under (``alice`` for ``Alice``); a read that cannot fail
    the command, which has already written."""
    try:
        return m.store().get(name).name
    except (StoreError, ValueError):  # removed meanwhile by another process
        return name


def enroll(
    name: str = typer.Argument(..., help=f"Speaker name. {NAMES_HELP}"),
    files: list[Path] = typer.Argument(..., help="One or more recordings of the speaker."),
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
    as_json: bool = JSON_OPT,
    max_seconds: float = MAX_OPT,
) -> None:
    """Enroll (or add recordings to) a speaker; nothing is written if any file or the name
    is bad, or a recording has too little speech. A name differing from an enrolled one only
    in case or spacing adds to that one."""
    m = _open(model, store, max_seconds)
    try:
        count = m.enroll(name, list(files))
        stored = _stored_name(m, name)
    except (AudioError, ValueError, TypeError, StoreError) as exc:
        _fail(exc)
    finally:
        m.close()
    if as_json:
        typer.echo(json.dumps({"speaker": stored, "utterances": count}))
    else:
        where = f": {count} utterance(s) in "
        console.print(Text.assemble("enrolled ", shown(stored, "bold"), where, shown(m.store_path)))


def identify(
    file: Path = typer.Argument(..., help="Recording to identify."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="How many candidates (>= 1)."),
    operating_point: str = POINT_OPT,
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
    as_json: bool = JSON_OPT,
    max_seconds: float = MAX_OPT,
) -> None:
    """Who is speaking? Top-k enrolled speakers, or "unknown" below the threshold (and for a
    recording with too little speech)."""
    try:
        check_top_k(top_k, "--top-k")
    except ValueError as exc:
        _fail(exc)
    m = _open(model, store, max_seconds)
    try:
        r = m.identify(file, top_k=top_k, operating_point=operating_point)
    except (AudioError, ValueError, StoreError, ModelFileError) as exc:
        _fail(exc)
    finally:
        m.close()
    title = Text.assemble("answer: ", shown(r.speaker or "unknown"))
    table = Table("rank", "speaker", f"score ({m.scoring})", "cosine", "LLR", title=title)
    for i, c in enumerate(r.candidates, 1):
        table.add_row(str(i), shown(c.name), f"{c.score:.4f}", f"{c.cosine:.4f}", f"{c.llr:.2f}")
    if r.note and not as_json:
        console.print(shown(r.note, "yellow"))
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
        _fail(exc)
    finally:
        m.close()
    table = Table("speaker", "utterances", "seconds")
    for r in records:
        table.add_row(shown(r.name), str(r.num_utterances), f"{r.total_duration:.1f}")
    _emit({"speakers": [asdict(r) for r in records]}, as_json, table)


@speakers_app.command("show")
def speakers_show(
    name: str, model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT,
    as_json: bool = JSON_OPT,
) -> None:  # fmt: skip
    """One speaker's enrolment utterances (the name is matched regardless of case)."""
    m = _open(model, store)
    try:
        stored = m.store().get(name).name
        utts = m.store().utterances(stored)
    except StoreError as exc:
        _fail(exc)
    finally:
        m.close()
    table = Table("source", "seconds", title=shown(stored))
    for src, dur in zip(utts.sources, utts.durations.tolist(), strict=True):
        table.add_row(shown(src), f"{dur:.2f}")
    _emit({"speaker": stored, "sources": utts.sources, "durations": utts.durations.tolist()},
          as_json, table)  # fmt: skip


@speakers_app.command("remove")
def speakers_remove(
    name: str, model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT
) -> None:
    """Delete a speaker and its utterances (the name is matched regardless of case)."""
    m = _open(model, store)
    try:
        record = m.store().remove(name)
    except StoreError as exc:
        _fail(exc)
    finally:
        m.close()
    count = f" ({record.num_utterances} utterance(s))"
    console.print(Text.assemble("removed ", shown(record.name, "bold"), count))


@speakers_app.command("export")
def speakers_export(
    path: Path, model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT
) -> None:
    """Write every speaker (embeddings, durations, sources, model id) to a file."""
    m = _open(model, store)
    try:
        n = m.store().export(path)
    except StoreError as exc:
        _fail(exc)
    finally:
        m.close()
    console.print(Text.assemble(f"exported {n} speaker(s) to ", shown(path)))


@speakers_app.command("import")
def speakers_import(
    path: Path,
    on_conflict: str = typer.Option("error", help="error, merge or replace."),
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
) -> None:
    """Read speakers exported by the same model into the store, all or nothing.

    Names follow the enrol rules; a name that is a look-alike of an enrolled one counts as
    that speaker for --on-conflict."""
    m = _open(model, store)
    try:
        summary = m.store().import_(path, on_conflict=on_conflict)  # type: ignore[arg-type]
    except (StoreError, ValueError) as exc:
        _fail(exc)
    finally:
        m.close()
    console.print(Text.assemble("imported from ", shown(path), f": {summary}"))
