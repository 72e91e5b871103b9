"""One atomic file write for the whole package.

A killed process must never leave a half-written model, score file, report or store export:
everything is written to a temporary file in the target's folder, flushed to disk, then renamed
over the target (``os.replace`` is atomic on POSIX and Windows).

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "out.txt"
    >>> atomic_write(p, "hello\\n")
    >>> p.read_text()
    'hello\\n'
    >>> with atomic_path(p) as tmp:
    ...     _ = tmp.write_text("bye\\n")
    >>> p.read_text()
    'bye\\n'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write"]


@contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that append one, such
    as ``np.savez``, keep the name); once the block ends without an exception the file is
    fsynced, given ``mode`` and renamed over ``path``; on an exception it is removed and
    ``path`` is left as it was. The parent folder is created when missing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.chmod(mode)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], data: str | bytes, mode: int = 0o644) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, mode) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
