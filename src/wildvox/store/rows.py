"""Row-level SQL of a store file: speakers found by name key, records, inserts, utterance sets.

Every function runs inside the caller's transaction on an open store connection; ``path`` only
names the file in errors. Names are looked up by :func:`wildvox.store.names.name_key`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from wildvox.store.names import name_key
from wildvox.store.schema import SpeakerRecord, StoreError, UnknownSpeaker, UtteranceSet
from wildvox.store.search import FloatArray

_RECORD_SQL = (
    "SELECT s.name, COUNT(u.id), COALESCE(SUM(u.duration), 0), s.created, s.updated "
    "FROM speakers s LEFT JOIN utterances u ON u.speaker_id = s.id {where} "
    "GROUP BY s.id ORDER BY s.name"
)


def find_speaker(conn: sqlite3.Connection, path: Path, name: str) -> tuple[int, str] | None:
    """``(id, stored name)`` of the speaker ``name`` denotes (same key), or ``None``.

    Raises :class:`StoreError` when ``name`` matches several look-alikes stored before names
    were unique regardless of case and none of them exactly.
    """
    sql = "SELECT id, name FROM speakers WHERE name_key = ? ORDER BY id"
    rows = conn.execute(sql, (name_key(name),)).fetchall()
    if len(rows) > 1:
        exact = [r for r in rows if r[1] == name]
        if len(exact) != 1:
            shown = ", ".join(repr(r[1]) for r in rows)
            raise StoreError(
                path, f"{name!r} matches several speakers ({shown}); give the exact name"
            )
        rows = exact
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def speaker_id(conn: sqlite3.Connection, path: Path, name: str) -> int:
    """Id of the speaker ``name`` denotes; raises :class:`UnknownSpeaker`."""
    found = find_speaker(conn, path, name) if isinstance(name, str) else None
    if found is None:
        raise UnknownSpeaker(path, name)
    return found[0]


def _record(row: tuple[Any, ...]) -> SpeakerRecord:
    return SpeakerRecord(str(row[0]), int(row[1]), float(row[2]), float(row[3]), float(row[4]))


def record(conn: sqlite3.Connection, sid: int) -> SpeakerRecord:
    """The record of speaker id ``sid``."""
    return _record(conn.execute(_RECORD_SQL.format(where="WHERE s.id = ?"), (sid,)).fetchone())


def all_records(conn: sqlite3.Connection) -> list[SpeakerRecord]:
    """Every speaker's record, sorted by name."""
    return [_record(r) for r in conn.execute(_RECORD_SQL.format(where="")).fetchall()]


def upsert_speaker(
    conn: sqlite3.Connection, path: Path, name: str, created: float, updated: float
) -> int:
    """Id of speaker ``name`` (a normal form), created when no look-alike exists;
    ``updated`` is set either way."""
    found = find_speaker(conn, path, name)
    if found is None:
        cur = conn.execute(
            "INSERT INTO speakers (name, name_key, created, updated) VALUES (?, ?, ?, ?)",
            (name, name_key(name), created, updated),
        )
        return int(cur.lastrowid or 0)
    # strictly increasing, so a change is always visible to other connections' caches
    conn.execute(
        "UPDATE speakers SET updated = max(?, updated + 1e-6) WHERE id = ?", (updated, found[0])
    )
    return found[0]


def utterance_set(conn: sqlite3.Connection, sid: int, embed_dim: int) -> UtteranceSet:
    """The utterances of speaker id ``sid`` in enrolment order."""
    rows = conn.execute(
        "SELECT source, duration, embedding, created FROM utterances "
        "WHERE speaker_id = ? ORDER BY id",
        (sid,),
    ).fetchall()
    emb: FloatArray = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4")
    return UtteranceSet(
        sources=[r[0] for r in rows],
        durations=np.array([r[1] for r in rows], dtype=np.float64),
        embeddings=emb.reshape(len(rows), embed_dim).astype(np.float32),
        created=np.array([r[3] for r in rows], dtype=np.float64),
    )
