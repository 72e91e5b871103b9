"""Shared CLI plumbing: data-root resolution, logging, progress bars, errors."""

from __future__ import annotations

import logging
import math
import os
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)  # logs, progress, errors
out = Console(soft_wrap=True)  # results: tables and summaries (stdout)
DEFAULT_DATA = Path("../shared/corpora/wildmix")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log lines on stderr: DEBUG with ``verbose``, warnings only with ``quiet``, else INFO."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def resolve_data(data: Path | None) -> Path:
    """``--data``, else ``$WILDVOX_DATA``, else ``../shared/corpora/wildmix`` when it exists."""
    if data is None:
        env = os.environ.get("WILDVOX_DATA")
        data = Path(env) if env else DEFAULT_DATA
    if not data.is_dir():
        fail(f"{data}: corpus folder not found (pass --data or set WILDVOX_DATA)")
    return data.resolve()


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 2 (no traceback for user errors)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def check_device(device: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``; anything else is a one-line error."""
    kind, _, index = device.partition(":")
    if (kind == "cpu" and not index) or (kind == "cuda" and (not index or index.isdigit())):
        return device
    fail(f"--device must be cpu, cuda or cuda:N, got {device!r}")


def listed_path(entry: str, list_file: Path, data: Path | None = None) -> Path:
    """A path named in a list file: as given when it exists, else next to the list file, in
    its VoxCeleb ``wav/`` folder, then under ``data`` (``data/wav`` when it has one)."""
    given = Path(entry)
    if given.is_absolute() or given.exists():
        return given
    base = list_file.resolve().parent
    roots = [base, base / "wav"]
    if data is not None:
        roots += [data / "wav", data]
    for root in roots:
        if (root / entry).exists():
            return root / entry
    return (data / "wav" if data is not None and (data / "wav").is_dir() else base) / entry


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; elsewhere (a log file, a pipe) a line on stderr
    every 10 % of the work. Yields ``advance(n)``."""
    if not console.is_terminal:
        done = [0]
        every = max(1, total // 10)

        def advance(n: int) -> None:
            before, done[0] = done[0], done[0] + n
            if done[0] // every > before // every or done[0] == total:
                console.print(f"{description}: {done[0]}/{total}", highlight=False)

        yield advance
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n: prog.advance(task, n)


_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format/bidi, surrogates, breaks


def printable(value: object) -> str:
    """``str(value)`` with every control, format (zero-width, bidi override), surrogate and
    line-break character written as its escape (``\\x1b``, ``\\u202e``), so that nothing a
    user typed can drive or rearrange the terminal."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _INVISIBLE
        else ch
        for ch in str(value)
    )  # fmt: skip


def shown(value: object, style: str = "") -> Text:
    """A user string (speaker name, path, note) for rich: :func:`printable`, and a ``Text``,
    so that rich reads no markup (``[/bold]``) and no emoji code (``:smile:``) in it.

    >>> shown("[white on white]mallory[/] \\x1b[2J").plain
    '[white on white]mallory[/] \\\\x1b[2J'
    """
    return Text(printable(value), style=style)


def clean(value: Any) -> Any:
    """JSON-ready results: floats rounded to 4 decimals (NaN/inf -> None), tuples as lists,
    so that no ``0.7394000000000001`` or ``NaN`` reaches a script.

    >>> clean({"eer": 0.07394000000000001, "d": (1.0, float("nan"))})
    {'eer': 0.0739, 'd': [1.0, None]}
    """
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
