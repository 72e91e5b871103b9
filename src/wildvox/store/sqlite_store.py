"""Enrolled-speaker store: one SQLite file of utterance embeddings, searched by cosine.

The file holds three tables (schema version 2, in ``PRAGMA user_version``)::

    meta(key, value)              model_id, embed_dim, generation (change counter)
    speakers(id, name, name_key, created, updated)
    utterances(id, speaker_id -> speakers ON DELETE CASCADE, source, duration, embedding,
               model_id, created)

Embeddings are little-endian float32 blobs of ``embed_dim`` values; times are Unix seconds;
durations are seconds of speech. The file runs in WAL mode with a busy timeout, so several
processes can read and write it at once; every write is one ``BEGIN IMMEDIATE`` transaction,
so a killed process leaves either all or none of an enrolment. A new file is made only where
none exists, whole and race-free; a 0-byte file or a store that lost its ``meta`` rows is
refused, never re-initialised (see :mod:`wildvox.store.opening`).

Speaker names (see :mod:`wildvox.store.names`) are stored NFC-normalised, trimmed, with
zero-width and other format characters removed; control characters, empty names and names over
200 characters are refused. Names keep the case they were given but are unique regardless of
case: every method looks a name up by its case-folded key, so ``get("Alice")`` finds ``alice``
and enrolling ``"Alice "`` adds utterances to ``alice``.

    >>> import tempfile, numpy as np
    >>> with tempfile.TemporaryDirectory() as tmp, SpeakerStore(f"{tmp}/s.db", "demo", 4) as st:
    ...     rec = st.enroll("ann", np.eye(4, dtype=np.float32)[:2], [3.0, 1.0], ["a.wav", "b.wav"])
    ...     _ = st.enroll("bob", np.eye(4, dtype=np.float32)[2:3], [2.0], ["c.wav"])
    ...     rec.num_utterances, st.identify(np.array([1, 0.2, 0, 0], np.float32), top_k=1)[0][0]
    (2, 'ann')

A speaker's embedding is the duration-weighted mean of its length-normalised utterance
embeddings, renormalised (:func:`wildvox.scoring.cosine.speaker_means`). ``identify``
searches exactly below ``approx_threshold`` speakers and with a faiss IVF-flat (or HNSW) index
above it (see :mod:`wildvox.store.search`).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

from wildvox.scoring.cosine import enroll_mean, speaker_means
from wildvox.store import rows
from wildvox.store.live_index import LiveIndex, SpeakerMatrix, merge_matrix, stale_speakers
from wildvox.store.names import name_key, normalize_name
from wildvox.store.opening import open_store
from wildvox.store.schema import (
    MIGRATIONS,
    Migration,
    SpeakerConflict,
    SpeakerRecord,
    StoreError,
    UtteranceSet,
    validate_utterances,
    write_transaction,
)
from wildvox.store.search import FloatArray, check_top_k
from wildvox.store.transfer import ExportedSpeaker, ImportSummary, read_export, write_export

logger = logging.getLogger(__name__)


def _keys(utts: UtteranceSet) -> list[tuple[str, bytes]]:
    """Identity of each utterance for merging: its source and exact embedding bytes."""
    return [(s, e.tobytes()) for s, e in zip(utts.sources, utts.embeddings, strict=True)]


class SpeakerStore:
    """Enrolled speakers of one embedding model, persisted in a SQLite file.

    Args:
        path: the SQLite file; created (with parents) only when no file exists there.
        model_id: identifier of the embedding model; a store is tied to one model.
        embed_dim: embedding size ``D``.
        approx_threshold: from this many speakers on, ``identify`` uses approximate search.
        busy_timeout_s: how long a write waits for another process' transaction, in seconds.
        search_threads: OpenMP threads for the approximate index (``None``: faiss default).
        approx_method: ``"ivf_flat"`` (builds in seconds) or ``"hnsw"`` (slow to build);
            see ``bench/results/store.md``.

    Raises:
        StoreError: the file is empty (0 bytes), not SQLite, corrupt, not a wildvox store, has
            lost its ``meta`` rows or has a newer schema; the folder cannot be made (its parent
            is a file, say). The file is left untouched.
        StoreModelMismatch: the file holds another model's embeddings.
    """

    migrations: ClassVar[tuple[Migration, ...]] = MIGRATIONS

    def __init__(
        self,
        path: str | Path,
        model_id: str,
        embed_dim: int,
        *,
        approx_threshold: int = 50_000,
        busy_timeout_s: float = 30.0,
        search_threads: int | None = None,
        approx_method: Literal["hnsw", "ivf_flat"] = "ivf_flat",
    ) -> None:
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("model_id must be a non-empty string")
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive integer, got {embed_dim!r}")
        self.path = Path(path)
        self.model_id = model_id
        self.embed_dim = embed_dim
        self.approx_threshold = approx_threshold
        self.search_threads = search_threads
        self._matrix_cache: SpeakerMatrix | None = None
        self._live = LiveIndex(embed_dim, approx_threshold, search_threads, method=approx_method)
        self._index_generation = -1
        self._conn: sqlite3.Connection | None = None
        with self._errors():
            self._conn = open_store(self.path, self.migrations, model_id, embed_dim, busy_timeout_s)

    # ---------------------------------------------------------------- plumbing
    def _conn_(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(self.path, "store is closed")
        return self._conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite errors into :class:`StoreError` naming the file."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise StoreError(self.path, f"SQLite error: {err}") from err

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` write transaction that increments the change counter."""
        conn = self._conn_()
        with self._errors(), write_transaction(conn):
            yield conn
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        conn = self._conn_()
        with self._errors():
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def generation(self) -> int:
        """Change counter, incremented by every committed write (from any process)."""
        with self._errors():
            row = self._conn_().execute("SELECT value FROM meta WHERE key = 'generation'")
            return int(row.fetchone()[0])

    def _insert_utterance(
        self,
        conn: sqlite3.Connection,
        speaker_id: int,
        source: str,
        duration: float,
        embedding: FloatArray,
        created: float,
    ) -> None:
        conn.execute(
            "INSERT INTO utterances (speaker_id, source, duration, embedding, model_id, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (speaker_id, source, duration, embedding.tobytes(), self.model_id, created),
        )

    # ---------------------------------------------------------------- public API
    def enroll(
        self,
        name: str,
        embeddings: npt.ArrayLike,
        durations: npt.ArrayLike,
        sources: Sequence[str],
    ) -> SpeakerRecord:
        """Add ``K`` utterances to speaker ``name`` (created if new), in one transaction.

        Args:
            name: speaker name, normalised (module docstring); a look-alike of an enrolled
                name (``Alice`` for ``alice``) adds to that speaker, whose name is kept.
            embeddings: ``(K, embed_dim)`` float embeddings, stored as float32.
            durations: ``(K,)`` speech durations in seconds (> 0), the pooling weights.
            sources: ``K`` strings naming where each utterance came from.

        Returns:
            The speaker's record after the enrolment (``name`` as stored).

        Raises:
            ValueError, TypeError: bad input (a refused name, say); nothing is written.
        """
        name = normalize_name(name)
        emb, dur, srcs = validate_utterances(embeddings, durations, sources, self.embed_dim)
        now = time.time()
        with self._transaction() as conn:
            sid = rows.upsert_speaker(conn, self.path, name, now, now)
            for i in range(emb.shape[0]):
                self._insert_utterance(conn, sid, srcs[i], float(dur[i]), emb[i], now)
            record = rows.record(conn, sid)
        logger.debug("enrolled %d utterances for %r in %s", emb.shape[0], name, self.path)
        return record

    def get(self, name: str) -> SpeakerRecord:
        """The record of speaker ``name`` (any look-alike); raises :class:`UnknownSpeaker`."""
        with self._snapshot() as conn:
            return rows.record(conn, rows.speaker_id(conn, self.path, name))

    def list_speakers(self) -> list[SpeakerRecord]:
        """Every enrolled speaker, sorted by name."""
        with self._errors():
            return rows.all_records(self._conn_())

    def __len__(self) -> int:
        with self._errors():
            return int(self._conn_().execute("SELECT COUNT(*) FROM speakers").fetchone()[0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        with self._errors():
            sql = "SELECT 1 FROM speakers WHERE name_key = ?"
            return self._conn_().execute(sql, (name_key(name),)).fetchone() is not None

    def remove(self, name: str) -> SpeakerRecord:
        """Delete speaker ``name`` and its utterances; returns its record as it was.

        Raises :class:`UnknownSpeaker`.
        """
        with self._transaction() as conn:
            sid = rows.speaker_id(conn, self.path, name)
            record = rows.record(conn, sid)
            conn.execute("DELETE FROM speakers WHERE id = ?", (sid,))
        return record

    def utterances(self, name: str) -> UtteranceSet:
        """The stored utterances of speaker ``name`` in enrolment order."""
        with self._snapshot() as conn:
            return rows.utterance_set(conn, rows.speaker_id(conn, self.path, name), self.embed_dim)

    def speaker_embedding(self, name: str) -> FloatArray:
        """Unit-norm ``(D,)`` embedding of speaker ``name`` (duration-weighted, see module doc)."""
        utts = self.utterances(name)
        return enroll_mean(utts.embeddings, utts.durations, renormalize=True)

    def matrix(self) -> tuple[list[str], FloatArray]:
        """``(names (S,), embeddings (S, D))`` of all speakers, in enrolment order.

        Cached until the change counter in ``meta`` moves, so repeated searches read nothing
        but that counter; after a change only the speakers whose ``updated`` time moved are
        re-read. The returned array is read-only.
        """
        cache = self._refresh()
        return list(cache.names), cache.matrix

    def _refresh(self) -> SpeakerMatrix:
        gen = self.generation()
        old = self._matrix_cache
        if old is not None and old.generation == gen:
            return old
        with self._snapshot() as conn:
            gen = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            speakers = conn.execute("SELECT id, name, updated FROM speakers ORDER BY id").fetchall()
            sids = np.array([r[0] for r in speakers], dtype=np.int64)
            stamps = np.array([r[2] for r in speakers], dtype=np.float64)
            stale = stale_speakers(old, sids, stamps)
            sql = "SELECT speaker_id, duration, embedding FROM utterances"
            if stale.size > sids.size // 2:
                found = conn.execute(sql + " ORDER BY speaker_id, id").fetchall()
            else:
                found = []
                for start in range(0, stale.size, 500):  # bound the number of SQL parameters
                    part = stale[start : start + 500].tolist()
                    marks = ",".join("?" * len(part))
                    found += conn.execute(
                        f"{sql} WHERE speaker_id IN ({marks}) ORDER BY speaker_id, id", part
                    ).fetchall()
        uid = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
        dur = np.fromiter((r[1] for r in found), dtype=np.float64, count=len(found))
        emb = np.frombuffer(b"".join(r[2] for r in found), dtype="<f4")
        if found:
            pooled_ids, pooled = speaker_means(
                emb.reshape(len(found), self.embed_dim), uid, dur, renormalize=True
            )
        else:
            pooled_ids, pooled = uid, np.zeros((0, self.embed_dim), dtype=np.float32)
        names = [r[1] for r in speakers]
        cache = merge_matrix(old, gen, sids, names, stamps, pooled_ids, pooled)
        if len(cache.names) < len(names):
            logger.warning(
                "%s: %d speakers have no utterances", self.path, len(names) - len(cache.names)
            )
        self._matrix_cache = cache
        logger.debug("%s: re-read %d of %d speakers", self.path, pooled_ids.size, sids.size)
        return cache

    def index(self) -> LiveIndex:
        """The search index over :meth:`matrix`, updated only when the store has changed."""
        cache = self._refresh()
        if self._index_generation != cache.generation:
            self._live.sync(cache.sids, cache.names, cache.matrix)
            self._index_generation = cache.generation
        return self._live

    def identify(self, query: npt.ArrayLike, top_k: int = 5) -> list[tuple[str, float]]:
        """The ``top_k`` enrolled speakers closest to ``query`` ``(D,)`` by cosine similarity.

        Returns ``[(name, cosine)]`` best first; empty when nobody is enrolled. Raises
        ``ValueError`` for a ``top_k`` that is not an integer >= 1.
        """
        top_k = check_top_k(top_k)
        q = np.asarray(query)
        if q.shape != (self.embed_dim,):
            raise ValueError(f"query must have shape ({self.embed_dim},), got {q.shape}")
        if not np.issubdtype(q.dtype, np.floating) or not np.isfinite(q).all() or not q.any():
            raise ValueError("query must be a finite, non-zero float vector")
        return self.index().search(q, top_k)

    # ---------------------------------------------------------------- export / import
    def export(self, path: str | Path) -> int:
        """Write every speaker and utterance to a JSON-lines file (see :mod:`.transfer`).

        The export reads one consistent snapshot. Returns the number of speakers written.
        """
        with self._snapshot() as conn:
            listing = conn.execute("SELECT id, name, created, updated FROM speakers ORDER BY name")
            speakers = (
                ExportedSpeaker(
                    name, created, updated, rows.utterance_set(conn, sid, self.embed_dim)
                )
                for sid, name, created, updated in listing.fetchall()
            )
            return write_export(path, self.model_id, self.embed_dim, speakers)

    def import_(
        self, path: str | Path, on_conflict: Literal["error", "merge", "replace"] = "error"
    ) -> ImportSummary:
        """Load an export file into this store, in one transaction.

        Args:
            path: a file written by :meth:`export`, for the same model and dim.
            on_conflict: for names already enrolled: ``"error"`` refuses the whole import
                (:class:`SpeakerConflict`), ``"merge"`` adds the utterances not already stored
                (same source and embedding), ``"replace"`` drops the stored utterances first.

        Raises:
            StoreModelMismatch: the file was made with another model or dim.
            StoreError: the file is malformed; nothing is written.
        """
        if on_conflict not in ("error", "merge", "replace"):
            raise ValueError(f"on_conflict must be error, merge or replace, not {on_conflict!r}")
        speakers = read_export(path, self.model_id, self.embed_dim)
        added = merged = replaced = n_utts = 0
        now = time.time()
        with self._transaction() as conn:
            found = {sp.name: rows.find_speaker(conn, self.path, sp.name) for sp in speakers}
            present = sorted(hit[1] for hit in found.values() if hit is not None)
            if present and on_conflict == "error":
                shown = ", ".join(map(repr, present[:5]))
                raise SpeakerConflict(
                    self.path, f"{len(present)} imported speakers already exist ({shown})"
                )
            for sp in speakers:
                utts = sp.utterances
                keep = np.ones(len(utts.sources), dtype=bool)
                hit = found[sp.name]
                if hit is None:
                    sid = rows.upsert_speaker(conn, self.path, sp.name, sp.created, sp.updated)
                    added += 1
                elif on_conflict == "replace":
                    conn.execute("DELETE FROM speakers WHERE id = ?", (hit[0],))
                    sid = rows.upsert_speaker(conn, self.path, sp.name, sp.created, sp.updated)
                    replaced += 1
                else:
                    sid = rows.upsert_speaker(conn, self.path, sp.name, 0.0, now)
                    have = set(_keys(rows.utterance_set(conn, sid, self.embed_dim)))
                    keep = np.array([key not in have for key in _keys(utts)])
                    merged += 1
                for i in np.flatnonzero(keep):
                    src, dur, emb = utts.sources[i], float(utts.durations[i]), utts.embeddings[i]
                    self._insert_utterance(conn, sid, src, dur, emb, float(utts.created[i]))
                n_utts += int(keep.sum())
        summary = ImportSummary(added, merged, replaced, n_utts)
        logger.info("imported %s from %s into %s", summary, path, self.path)
        return summary

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SpeakerStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SpeakerStore({str(self.path)!r}, model_id={self.model_id!r}, dim={self.embed_dim})"
