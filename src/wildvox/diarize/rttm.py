"""Speaker turns and the RTTM file format (NIST Rich Transcription Time Marked).

One line per turn, ten space-separated fields::

    SPEAKER <file-id> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>

Times are in seconds. RTTM fields cannot hold white space, so a speaker name containing any is
written with each white-space run replaced by ``_`` (the JSON output keeps the name as it is).

Example::

    >>> turns = [Turn(0.0, 1.5, "ann"), Turn(1.25, 3.0, "unknown-1")]
    >>> print(format_rttm(turns, "meeting"), end="")
    SPEAKER meeting 1 0.000 1.500 <NA> <NA> ann <NA> <NA>
    SPEAKER meeting 1 1.250 1.750 <NA> <NA> unknown-1 <NA> <NA>
    >>> parse_rttm(format_rttm(turns, "meeting"))["meeting"] == turns
    True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wildvox.data.files import atomic_write

__all__ = [
    "RttmError",
    "Turn",
    "format_rttm",
    "parse_rttm",
    "read_rttm",
    "to_annotation",
    "write_rttm",
]

_SPACE = re.compile(r"\s+")


class RttmError(ValueError):
    """A malformed RTTM file or line (the message names the file and line)."""


@dataclass(frozen=True, order=True)
class Turn:
    """One speaker turn: ``start`` and ``end`` in seconds, ``speaker`` a label."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def _field(name: str) -> str:
    out = _SPACE.sub("_", name.strip())
    if not out:
        raise ValueError(f"RTTM field {name!r} is empty")
    return out


def format_rttm(turns: Iterable[Turn], file_id: str, channel: int = 1) -> str:
    """RTTM text of ``turns`` (times to the millisecond), in the order given."""
    fid = _field(file_id)
    lines = [
        f"SPEAKER {fid} {channel} {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> "
        f"{_field(t.speaker)} <NA> <NA>\n"
        for t in turns
    ]
    return "".join(lines)


def write_rttm(
    path: str | os.PathLike[str], turns: Iterable[Turn], file_id: str, channel: int = 1
) -> None:
    """Write ``turns`` as RTTM to ``path`` (atomically)."""
    atomic_write(path, format_rttm(turns, file_id, channel))


def parse_rttm(text: str, source: str = "<rttm>") -> dict[str, list[Turn]]:
    """``{file_id: [Turn, ...]}`` from RTTM text; lines other than ``SPEAKER`` are skipped.

    Raises:
        RttmError: a ``SPEAKER`` line without 10 fields, or with bad times.
    """
    out: dict[str, list[Turn]] = {}
    for no, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 10:
            raise RttmError(f"{source}:{no}: {len(fields)} fields, an RTTM line has 10")
        try:
            start, dur = float(fields[3]), float(fields[4])
        except ValueError:
            raise RttmError(f"{source}:{no}: start/duration {fields[3]!r} {fields[4]!r}") from None
        if not (start >= 0 and dur >= 0):
            raise RttmError(f"{source}:{no}: negative or NaN start/duration")
        out.setdefault(fields[1], []).append(Turn(start, round(start + dur, 6), fields[7]))
    return out


def read_rttm(path: str | os.PathLike[str]) -> dict[str, list[Turn]]:
    """:func:`parse_rttm` of a file."""
    return parse_rttm(Path(path).read_text(encoding="utf-8"), str(path))


def to_annotation(turns: Sequence[Turn], uri: str = "file") -> Any:
    """A ``pyannote.core.Annotation`` of ``turns`` (needs the ``diarize`` extra)."""
    from wildvox.registry import optional_import

    core = optional_import("pyannote.core", "diarize")
    ann = core.Annotation(uri=uri)
    for k, t in enumerate(turns):
        ann[core.Segment(t.start, t.end), k] = t.speaker
    return ann
