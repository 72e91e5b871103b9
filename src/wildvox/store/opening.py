"""Opening a speaker-store file: refuse what is not a store, create new ones race-free, migrate.

A new store is made only where no file exists. It is built whole (schema, ``meta`` rows, WAL
mode) in a temporary file beside the target and published with a hard link, which fails when
the name is taken: processes creating the same store at once all end up in the one that
landed first, and nobody ever sees a half-made store at the path. (:func:`wildvox.data.files.
atomic_path` renames *over* its target; here a store another process has just created, with
its first enrolment, must never be replaced, hence the link.)

An existing file is checked, never re-initialised:

* a 0-byte file (a store truncated by a full disk or a failed copy, say) is refused;
* a file that is not SQLite, or an SQLite database with someone else's tables, is refused;
* a store whose ``meta`` rows are gone is refused rather than re-stamped with the current model.

In every case the file is left as it was and the :class:`StoreError` says how to recover.
Contention ("database is locked" while another process migrates or switches the journal mode)
is retried until the busy timeout runs out.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from wildvox.store.schema import Migration, StoreError, StoreModelMismatch, write_transaction

logger = logging.getLogger(__name__)

_SQLITE_HEADER = b"SQLite format 3\x00"
_META_KEYS = ("model_id", "embed_dim", "generation")


def check_store_file(path: Path) -> bool:
    """Whether ``path`` exists; refuse, without touching it, one that cannot be a store.

    Raises:
        StoreError: a folder, a parent that is not a folder, a dangling symbolic link, a 0-byte
            file, or a file that is not an SQLite database.
    """
    if path.is_dir():
        raise StoreError(path, "is a directory, not a speaker-store file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(path, f"cannot create the store: {parent} is a file, not a folder")
            break
    if not path.exists():
        if path.is_symlink():
            raise StoreError(path, "is a symbolic link to a missing file; left untouched")
        return False
    try:
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
    except OSError as err:
        raise StoreError(path, f"cannot read the store file: {err.strerror or err}") from err
    if not header:
        raise StoreError(
            path,
            "is an empty (0-byte) file, not a speaker store; if it was one, it has been truncated "
            "and its speakers are gone: restore it from a backup or import an export "
            "(`wildvox speakers import`) into a new store; delete the file to start a new store",
        )
    if header != _SQLITE_HEADER:
        raise StoreError(path, "is not an SQLite database; left untouched")
    return True


def _meta_rows(model_id: str, embed_dim: int) -> list[tuple[str, str | int]]:
    return [("model_id", model_id), ("embed_dim", embed_dim), ("generation", 0)]


def _initialise(
    conn: sqlite3.Connection, migrations: Sequence[Migration], model_id: str, embed_dim: int
) -> None:
    """Schema from version 0 and the ``meta`` rows, inside the caller's transaction."""
    for step in migrations:
        step(conn)
    conn.execute(f"PRAGMA user_version = {len(migrations)}")
    conn.executemany("INSERT INTO meta VALUES (?, ?)", _meta_rows(model_id, embed_dim))


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:  # a folder cannot be opened on Windows: its rename is durable anyway
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path, migrations: Sequence[Migration], model_id: str, embed_dim: int) -> None:
    """Build a complete store beside ``path`` and link it there unless the name is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode from the umask
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: openers never switch it
            with write_transaction(conn):
                _initialise(conn, migrations, model_id, embed_dim)
        finally:
            conn.close()  # the last connection: the WAL is checkpointed and removed
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            logger.debug("%s was created by another process meanwhile; using that one", path)
            return
        except OSError:  # a file system without hard links: publish by rename, if still free
            if path.exists():
                return
            tmp.replace(path)
        _fsync(path.parent)
        logger.info("created speaker store %s (model %s, dim %d)", path, model_id, embed_dim)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def _migrate(
    conn: sqlite3.Connection,
    path: Path,
    migrations: Sequence[Migration],
    model_id: str,
    embed_dim: int,
) -> None:
    """Bring an existing file to version ``len(migrations)`` in one transaction.

    A version-0 file must hold no tables (anything else is someone else's database); it gets
    the whole schema and its ``meta`` rows. Raises :class:`StoreError` for a newer schema.
    """
    target = len(migrations)
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) == target:
        return
    with write_transaction(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])  # under the lock
        if version > target:
            raise StoreError(path, f"schema version {version} is newer than supported ({target})")
        if version == 0:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
            if tables:
                raise StoreError(path, f"is an SQLite database but not a speaker store: {tables}")
            logger.info("%s: empty SQLite database, creating the store schema", path)
            _initialise(conn, migrations, model_id, embed_dim)
            return
        for v in range(version, target):
            logger.info("%s: migrating schema %d -> %d", path, v, v + 1)
            migrations[v](conn)
        conn.execute(f"PRAGMA user_version = {target}")


def _check_meta(conn: sqlite3.Connection, path: Path, model_id: str, embed_dim: int) -> None:
    """Refuse a store whose ``meta`` rows are missing or name another model."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        speakers = int(conn.execute("SELECT COUNT(*) FROM speakers").fetchone()[0])
        models = [r[0] for r in conn.execute("SELECT DISTINCT model_id FROM utterances LIMIT 3")]
        made_by = f", utterances of model {', '.join(map(repr, models))}" if models else ""
        raise StoreError(
            path,
            f"damaged store: its meta table has lost {', '.join(missing)} ({speakers} speakers"
            f"{made_by}); it was not re-stamped with model {model_id!r} and is left untouched: "
            "restore it from a backup, or re-insert the meta rows with sqlite3 if you know "
            "which model made it",
        )
    stored = (str(meta["model_id"]), int(meta["embed_dim"]))
    if stored != (model_id, embed_dim):
        raise StoreModelMismatch(path, stored, (model_id, embed_dim))


def _is_contention(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def open_store(
    path: Path,
    migrations: Sequence[Migration],
    model_id: str,
    embed_dim: int,
    busy_timeout_s: float,
) -> sqlite3.Connection:
    """An autocommit connection to the store at ``path``, created (with parents) when missing.

    The busy timeout is set when connecting, before any statement; contention during the
    open is retried until ``busy_timeout_s`` has passed.

    Raises:
        StoreError: see the module docstring; ``sqlite3.DatabaseError`` for a corrupt file.
        StoreModelMismatch: the store holds another model's embeddings.
    """
    deadline = time.monotonic() + busy_timeout_s
    pause = 0.005
    while True:
        if not check_store_file(path):
            try:
                _create(path, migrations, model_id, embed_dim)
            except OSError as err:
                raise StoreError(path, f"cannot create the store: {err.strerror or err}") from err
        # mode=rw: never let SQLite create a fresh file here should ours vanish meanwhile
        uri = f"{path.resolve().as_uri()}?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.OperationalError:
            if path.exists() or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            continue
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn, path, migrations, model_id, embed_dim)
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # a version-0 or pre-WAL file
            conn.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes
            _check_meta(conn, path, model_id, embed_dim)
            return conn
        except sqlite3.OperationalError as err:
            conn.close()
            again = _is_contention(err) or not path.exists()  # locked, or the file was moved
            if not again or time.monotonic() + pause > deadline:
                raise
            logger.debug("%s: %s while opening; retrying", path, err)
        except BaseException:
            conn.close()
            raise
        time.sleep(pause)
        pause = min(2 * pause, 0.2)
