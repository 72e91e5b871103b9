"""Speaker-store schema: migrations, record types, exceptions and input validation.

Schema version ``v`` of a store file lives in ``PRAGMA user_version``; ``MIGRATIONS[v]`` upgrades
a file from ``v`` to ``v + 1`` and runs inside the transaction that sets the new version.
Version 0 is an empty SQLite file.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from wildvox.store.search import FloatArray

logger = logging.getLogger(__name__)

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


#: ``MIGRATIONS[v]`` upgrades a file from schema version ``v`` to ``v + 1``.
MIGRATIONS: tuple[Migration, ...] = (_migration_1,)


def pool_utterances(embeddings: FloatArray, durations: npt.ArrayLike) -> FloatArray:
    """Speaker embedding ``(D,)`` from utterances ``(K, D)`` and ``durations (K,)`` seconds.

    Duration-weighted mean of the L2-normalised rows, renormalised to unit length.
    """
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    mean = np.asarray(durations, dtype=np.float64) @ unit
    return (mean / np.linalg.norm(mean)).astype(np.float32)


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
    return emb32, dur, list(sources)


def pool_by_speaker(
    speaker_ids: npt.NDArray[np.int64], durations: npt.NDArray[np.float64], embeddings: FloatArray
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """:func:`pool_utterances` for many speakers at once.

    Args:
        speaker_ids: ``(N,)`` speaker of each utterance, grouped (equal ids adjacent).
        durations: ``(N,)`` seconds.
        embeddings: ``(N, D)``.

    Returns:
        ``(ids (S,), pooled (S, D))``: each group's id and unit-norm embedding.
    """
    if speaker_ids.size == 0:
        return speaker_ids.copy(), np.zeros((0, embeddings.shape[1]), dtype=np.float32)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    starts = np.flatnonzero(np.r_[True, speaker_ids[1:] != speaker_ids[:-1]])
    sums = np.add.reduceat(unit * durations[:, None], starts, axis=0)
    pooled = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    return speaker_ids[starts], pooled


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_header(path: Path) -> None:
    """Refuse, without touching it, a non-empty ``path`` that is not an SQLite database."""
    if path.is_dir():
        raise StoreError(path, "is a directory, not a speaker-store file")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
        if header != _SQLITE_HEADER:
            raise StoreError(path, "is not an SQLite database; left untouched")


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


def apply_migrations(
    conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the file to version ``len(migrations)``: pending steps in order, one transaction.

    A version-0 file must be empty (no tables): anything else is someone else's database.
    Returns the version the file had before. Raises :class:`StoreError` for a newer schema.
    """
    target = len(migrations)
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == target:
        return version
    with write_transaction(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])  # under the lock
        if version > target:
            raise StoreError(path, f"schema version {version} is newer than supported ({target})")
        if version == 0:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
            if tables:
                raise StoreError(path, f"is an SQLite database but not a speaker store: {tables}")
        for v in range(version, target):
            logger.info("%s: migrating schema %d -> %d", path, v, v + 1)
            migrations[v](conn)
        conn.execute(f"PRAGMA user_version = {target}")
    return version


def ensure_meta(conn: sqlite3.Connection, path: Path, model_id: str, embed_dim: int) -> None:
    """Record ``model_id``/``embed_dim`` in a new store; raise :class:`StoreModelMismatch`
    if the store already holds different ones."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "model_id" not in meta:
        with write_transaction(conn):
            conn.executemany(
                "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                [("model_id", model_id), ("embed_dim", embed_dim), ("generation", 0)],
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    stored = (str(meta["model_id"]), int(meta["embed_dim"]))
    if stored != (model_id, embed_dim):
        raise StoreModelMismatch(path, stored, (model_id, embed_dim))
