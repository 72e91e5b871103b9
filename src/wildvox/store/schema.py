"""Speaker-store schema: migrations, record types, exceptions and input validation.

Schema version ``v`` of a store file lives in ``PRAGMA user_version``; ``MIGRATIONS[v]`` upgrades
a file from ``v`` to ``v + 1`` and runs inside the transaction that sets the new version.
Version 0 is an SQLite database without tables (a 0-byte file is refused, see
:mod:`wildvox.store.opening`).

Version 2 adds ``speakers.name_key`` (:func:`wildvox.store.names.name_key`), the look-alike
key names are found and kept unique by. Its index is not ``UNIQUE``: a store made before
version 2 may already hold look-alikes (``alice`` and ``Alice``); those stay, each reachable by
its exact name, and no new look-alike can be added.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from wildvox.store.names import name_key
from wildvox.store.search import FloatArray

Migration = Callable[[sqlite3.Connection], None]


class StoreError(Exception):
    """A problem with a speaker-store file; ``path`` names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(path, problem)
        self.path = Path(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class StoreModelMismatch(StoreError):
    """The store holds embeddings of another model or size than the one requested."""

    def __init__(self, path: str | Path, stored: tuple[str, int], requested: tuple[str, int]):
        super().__init__(
            path,
            f"holds embeddings of model {stored[0]!r} (dim {stored[1]}), "
            f"not {requested[0]!r} (dim {requested[1]})",
        )
        self.stored = stored
        self.requested = requested
        self.args = (path, stored, requested)  # so the exception pickles across processes


class UnknownSpeaker(StoreError, KeyError):
    """No speaker of that name is enrolled (a ``KeyError``)."""

    def __init__(self, path: str | Path, name: str) -> None:
        super().__init__(path, f"no enrolled speaker named {name!r}")
        self.name = name
        self.args = (path, name)


class SpeakerConflict(StoreError):
    """An import met speakers that already exist and ``on_conflict="error"``."""


@dataclass(frozen=True)
class SpeakerRecord:
    """Summary of one enrolled speaker; ``total_duration`` in seconds, times in Unix seconds."""

    name: str
    num_utterances: int
    total_duration: float
    created: float
    updated: float


@dataclass(frozen=True)
class UtteranceSet:
    """A speaker's utterances: ``embeddings (K, D)`` float32, ``durations (K,)`` seconds."""

    sources: list[str]
    durations: npt.NDArray[np.float64]
    embeddings: FloatArray
    created: npt.NDArray[np.float64]


def _migration_1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL)")
    conn.execute(
        "CREATE TABLE speakers (id INTEGER PRIMARY KEY AUTOINCREMENT, "  # ids never reused
        "name TEXT NOT NULL UNIQUE, created REAL NOT NULL, updated REAL NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE utterances (id INTEGER PRIMARY KEY, "
        "speaker_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE, "
        "source TEXT NOT NULL, duration REAL NOT NULL, embedding BLOB NOT NULL, "
        "model_id TEXT NOT NULL, created REAL NOT NULL)"
    )
    conn.execute("CREATE INDEX utterances_by_speaker ON utterances(speaker_id)")


def _migration_2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE speakers ADD COLUMN name_key TEXT NOT NULL DEFAULT ''")
    rows = conn.execute("SELECT id, name FROM speakers").fetchall()
    conn.executemany(
        "UPDATE speakers SET name_key = ? WHERE id = ?", [(name_key(n), i) for i, n in rows]
    )
    conn.execute("CREATE INDEX speakers_by_key ON speakers(name_key)")


#: ``MIGRATIONS[v]`` upgrades a file from schema version ``v`` to ``v + 1``.
MIGRATIONS: tuple[Migration, ...] = (_migration_1, _migration_2)


def validate_utterances(
    embeddings: npt.ArrayLike, durations: npt.ArrayLike, sources: Sequence[str], embed_dim: int
) -> tuple[FloatArray, npt.NDArray[np.float64], list[str]]:
    """Check and convert ``embeddings (K, D)``, ``durations (K,)`` seconds, ``sources`` (K).

    Raises ``ValueError``/``TypeError`` naming the problem: wrong shape or dim, NaN/inf,
    a zero embedding, a non-positive duration, a source that is not a string.
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] != embed_dim:
        raise ValueError(f"embeddings must have shape (K>=1, {embed_dim}), got {emb.shape}")
    if not np.issubdtype(emb.dtype, np.floating):
        raise TypeError(f"embeddings must be floating point, got dtype {emb.dtype}")
    emb32 = np.ascontiguousarray(emb, dtype="<f4")
    if not np.isfinite(emb32).all():
        raise ValueError("embeddings contain NaN or infinite values (after casting to float32)")
    if (np.linalg.norm(emb32, axis=1) == 0).any():
        raise ValueError("embeddings contain an all-zero row, which has no direction")
    k = emb32.shape[0]
    dur = np.asarray(durations, dtype=np.float64)
    if dur.shape != (k,):
        raise ValueError(f"durations must have shape ({k},), got {dur.shape}")
    if not (np.isfinite(dur).all() and (dur > 0).all()):
        raise ValueError("durations must be finite and > 0 seconds")
    if isinstance(sources, str) or len(sources) != k:
        raise ValueError(f"sources must be a list of {k} strings")
    if not all(isinstance(s, str) for s in sources):
        raise TypeError("every source must be a string")
    # A path that is not valid UTF-8 (lone surrogates from os.fsdecode) is kept readable.
    srcs = [s.encode("utf-8", "backslashreplace").decode("utf-8") for s in sources]
    return emb32, dur, srcs


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (autocommit ``conn``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
