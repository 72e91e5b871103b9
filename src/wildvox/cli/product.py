"""``wildvox verify / enroll / identify / speakers``: recognition with a model folder.

Results (tables, ``--json``, ``--jsonl``) go to stdout, logs, progress and errors to stderr.
``verify`` exits 0 on accept, 1 on reject; ``identify`` 0 when a speaker is named, 1 for
unknown; 2 is an error. Every user error ends in one ``error:`` line, never a traceback; every
string a user chose (speaker names, paths, recording sources) reaches the terminal through
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
from wildvox.cli.common import (
    check_device,
    clean,
    console,
    fail,
    listed_path,
    out,
    printable,
    setup_logging,
    shown,
)
from wildvox.cli.product_batch import identify_many, verify_pairs
from wildvox.inference.model_io import ModelFileError
from wildvox.store import MAX_NAME_LENGTH, StoreError, check_top_k

MODEL_OPT = typer.Option(None, "--model", help="Exported model folder (default: shipped model).")
STORE_OPT = typer.Option(None, "--store", help="Speaker store file (default: $WILDVOX_STORE).")
POINT_OPT = typer.Option(
    "eer", "--operating-point", "-p", help="eer, min-dcf, bayes, far=1%, far=0.1%, far=X%, frr=X%."
)
JSON_OPT = typer.Option(False, "--json", help="Print JSON for scripts.")
JSONL_OPT = typer.Option(False, "--jsonl", help="Batch: one JSON object per line, as it comes.")
DEVICE_OPT = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N.")
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


def _open(
    model: Path | None, store: Path | None, max_seconds: float = MAX_SECONDS, device: str = "cpu"
) -> SpeakerModel:
    if not max_seconds > 0:
        fail(f"--max-seconds must be > 0, got {max_seconds}")
    setup_logging(quiet=True)  # warnings (an uncalibrated model) on stderr
    try:
        m = load_model(model, store=store, device=check_device(device))
    except (ModelFileError, ValueError, RuntimeError) as exc:  # RuntimeError: no such CUDA device
        _fail(exc)
    m.max_seconds = max_seconds
    return m


def _emit(payload: dict[str, Any], as_json: bool, table: Table | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(clean(payload), indent=2, ensure_ascii=False))
    elif table is not None:
        out.print(table)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verify(
    a: Path | None = typer.Argument(None, help="First recording."),
    b: Path | None = typer.Argument(None, help="Second recording."),
    pairs: Path | None = typer.Option(
        None,
        "--pairs",
        help="Batch: a file of 'A B' lines, or a trial list 'LABEL A B' (then "
        "also EER / MinDCF and the false accepts / rejects reached). Relative paths: as given, "
        "else next to the list (and its wav/ folder).",
    ),
    operating_point: str = POINT_OPT,
    model: Path | None = MODEL_OPT,
    as_json: bool = JSON_OPT,
    jsonl: bool = JSONL_OPT,
    max_seconds: float = MAX_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Same speaker? Prints the score, the calibrated LLR and accept/reject.

    Exit status: 0 accept, 1 reject, 2 error. With --pairs: 0 when every pair was decided, 2
    when some could not be (their lines say why); each file is embedded once however many
    pairs use it, and a summary ends the output.

    A recording with too little speech (Silero VAD) is rejected with reliable: false."""
    if (pairs is None) == (a is None or b is None) or (pairs is not None and a is not None):
        fail("give two recordings A B, or --pairs FILE")
    m = _open(model, None, max_seconds, device)
    if pairs is not None:
        raise typer.Exit(verify_pairs(m, pairs, operating_point, as_json, jsonl))
    assert a is not None and b is not None
    try:
        v = m.verify(a, b, operating_point)
    except (AudioError, ValueError, ModelFileError) as exc:
        _fail(exc)
    table = Table(f"score ({m.scoring})", "cosine", "LLR", "threshold", "decision", "note")
    decision = "[green]accept[/]" if v.accept else "[red]reject[/]"
    table.add_row(f"{v.score:.4f}", f"{v.cosine:.4f}", _num(v.llr, 2),
                  shown(f"{v.threshold:.2f} ({v.operating_point})"), decision,
                  shown(v.note))  # fmt: skip
    _emit(asdict(v), as_json or jsonl, table)
    raise typer.Exit(0 if v.accept else 1)


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
    device: str = DEVICE_OPT,
) -> None:
    """Enroll (or add recordings to) a speaker; nothing is written if any file or the name
    is bad, a recording has too little speech, or is already enrolled for the speaker (the
    same content, under any file name). A name differing from an enrolled one only in case or
    spacing adds to that one."""
    m = _open(model, store, max_seconds, device)
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
        out.print(Text.assemble("enrolled ", shown(stored, "bold"), where, shown(m.store_path)))


def identify(
    inputs: list[Path] = typer.Argument(None, help="Recordings or folders of recordings."),
    list_file: Path | None = typer.Option(
        None, "--list", help="Batch: a file of recording paths, one per line."
    ),
    top_k: int = typer.Option(5, "--top-k", "-k", help="How many candidates (>= 1)."),
    operating_point: str = POINT_OPT,
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
    as_json: bool = JSON_OPT,
    jsonl: bool = JSONL_OPT,
    max_seconds: float = MAX_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Who is speaking? Top-k enrolled speakers ranked by calibrated LLR, or "unknown" below
    the threshold (and for a recording with too little speech, or with more than one voice:
    multiple_speakers: true).

    Exit status: 0 when a speaker is named, 1 for unknown, 2 for an error. Several inputs
    (files, folders, --list) are identified in one process: one line each (a table row or
    --jsonl), a summary, and exit 0 when every input was named, 1 when some were unknown, 2
    when some could not be read."""
    try:
        check_top_k(top_k, "--top-k")
    except ValueError as exc:
        _fail(exc)
    files = identify_inputs(inputs or [], list_file)
    m = _open(model, store, max_seconds, device)
    try:
        if len(files) > 1 or list_file is not None or jsonl:
            code = identify_many(m, files, top_k, operating_point, as_json, jsonl)
            raise typer.Exit(code)
        try:
            r = m.identify(files[0], top_k=top_k, operating_point=operating_point)
        except (AudioError, ValueError, StoreError, ModelFileError) as exc:
            _fail(exc)
    finally:
        m.close()
    title = Text.assemble("answer: ", shown(r.speaker or "unknown"))
    table = Table("rank", "speaker", f"score ({m.scoring})", "cosine", "LLR", title=title)
    for i, c in enumerate(r.candidates, 1):
        table.add_row(str(i), shown(c.name), f"{c.score:.4f}", f"{c.cosine:.4f}", _num(c.llr, 2))
    if r.note and not as_json:
        console.print(shown(r.note, "yellow"))
    _emit(asdict(r), as_json, table)
    raise typer.Exit(0 if r.speaker is not None else 1)


def identify_inputs(inputs: list[Path], list_file: Path | None) -> list[Path]:
    """The recordings named by arguments (folders: their audio files) and ``--list``."""
    from wildvox.cli.evaluate import collect_inputs

    files = [p for _, p in collect_inputs(inputs)]
    if list_file is not None:
        try:
            lines = list_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            fail(f"{list_file}: cannot read ({exc.strerror or exc})")
        files += [listed_path(line.strip(), list_file) for line in lines if line.strip()]
    if not files:
        fail("give recordings, folders or --list FILE")
    return files


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
    name: str,
    model: Path | None = MODEL_OPT,
    store: Path | None = STORE_OPT,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = JSON_OPT,
) -> None:
    """Delete a speaker and its utterances (the name is matched regardless of case). On a
    terminal it asks first (--yes skips the question)."""
    m = _open(model, store)
    try:
        record = m.store().get(name)
        if not yes and console.is_terminal:
            question = f"remove {printable(record.name)} ({record.num_utterances} utterance(s))?"
            if not typer.confirm(question, err=True):
                console.print("nothing removed")
                raise typer.Exit(1)
        record = m.store().remove(record.name)
    except StoreError as exc:
        _fail(exc)
    finally:
        m.close()
    if as_json:
        typer.echo(json.dumps({"removed": record.name, "utterances": record.num_utterances},
                              ensure_ascii=False))  # fmt: skip
        return
    count = f" ({record.num_utterances} utterance(s))"
    out.print(Text.assemble("removed ", shown(record.name, "bold"), count))


@speakers_app.command("export")
def speakers_export(
    path: Path, model: Path | None = MODEL_OPT, store: Path | None = STORE_OPT
) -> None:
    """Write every speaker (embeddings, durations, sources, model id) to a JSON Lines file:
    one header line, then one JSON object per speaker. Name it .jsonl: a .json name is
    refused, as the file is not one JSON document."""
    if path.suffix.lower() == ".json":
        fail(f"{path}: the export is JSON Lines (one object per line), not one JSON document; "
             f"name it {path.with_suffix('.jsonl').name}")  # fmt: skip
    m = _open(model, store)
    try:
        n = m.store().export(path)
    except StoreError as exc:
        _fail(exc)
    finally:
        m.close()
    out.print(Text.assemble(f"exported {n} speaker(s) to ", shown(path), " (JSON Lines)"))


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
    done = (f": {summary.added} added, {summary.merged} merged, {summary.replaced} replaced "
            f"speaker(s), {summary.utterances} utterance(s)")  # fmt: skip
    out.print(Text.assemble("imported from ", shown(path), done))
