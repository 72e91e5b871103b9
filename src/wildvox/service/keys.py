"""API keys of the HTTP service, kept hashed beside the speaker store.

A key is ``wvx_<id>_<secret>``: ``id`` names the key in listings and in the file, ``secret`` is
32 random bytes (URL-safe base64) shown once, when the key is made. The file
(``api_keys.json`` in the store's folder, mode 0600) keeps per key its id, label, creation
time, a random salt and ``sha256(salt + secret)``; the secret itself is never stored. A
salted SHA-256 suffices because secrets are random (256 bits), not passwords: there is
nothing to guess from a leaked file.

>>> import tempfile
>>> from pathlib import Path
>>> keys = ApiKeys(Path(tempfile.mkdtemp()) / "api_keys.json")
>>> key, info = keys.add("laptop")
>>> keys.check(key) == info.key_id, keys.check(key + "x"), keys.check("nonsense")
(True, None, None)
>>> [k.label for k in keys.list()]
['laptop']
>>> keys.revoke(info.key_id).label, keys.check(key)
('laptop', None)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from wildvox.data.files import atomic_write

__all__ = ["KEYS_FILE", "LOCAL_HOSTS", "ApiKeyError", "ApiKeys", "KeyInfo", "keys_path"]

#: hosts that the service may listen on without API keys (``--no-auth``).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: the keys file's name, in the speaker store's folder.
KEYS_FILE = "api_keys.json"
PREFIX = "wvx"
MAX_LABEL_LENGTH = 100


def keys_path(store_path: str | os.PathLike[str]) -> Path:
    """Where the API keys of the store at ``store_path`` are kept."""
    return Path(store_path).parent / KEYS_FILE


class ApiKeyError(ValueError):
    """A bad label, an unknown key id or an unreadable keys file."""


@dataclass(frozen=True)
class KeyInfo:
    """What is stored about one key (never the secret)."""

    key_id: str
    label: str
    created: float  # seconds since the epoch (UTC)
    salt: str  # hex
    digest: str  # hex sha256(salt + secret)


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8")).hexdigest()


class ApiKeys:
    """The keys file at ``path``; every read re-reads it when it changed on disk, so a key
    revoked by ``wildvox serve keys revoke`` stops working in a running server at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache: tuple[tuple[int, int], dict[str, KeyInfo]] | None = None

    # ------------------------------------------------------------------ file
    def _read(self) -> dict[str, KeyInfo]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._cache = None
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
            keys = {r["key_id"]: KeyInfo(**r) for r in rows["keys"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ApiKeyError(f"{self.path}: unreadable API keys file ({exc})") from exc
        self._cache = (stamp, keys)
        return keys

    def _write(self, keys: dict[str, KeyInfo]) -> None:
        payload = {"keys": [asdict(k) for k in keys.values()]}
        atomic_write(self.path, json.dumps(payload, indent=2) + "\n", mode=0o600)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, KeyInfo]]:
        """Read-modify-write under an exclusive lock (two ``keys add`` at once lose nothing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                self._cache = None
                keys = dict(self._read())
                yield keys
                self._write(keys)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ operations
    def add(self, label: str) -> tuple[str, KeyInfo]:
        """A new key for ``label``: returns the full key (shown once) and what is stored."""
        label = label.strip()
        if not label or len(label) > MAX_LABEL_LENGTH or not label.isprintable():
            raise ApiKeyError(
                f"a key label must be 1-{MAX_LABEL_LENGTH} printable characters, got {label!r}"
            )
        with self._locked() as keys:
            key_id = secrets.token_hex(4)
            while key_id in keys:
                key_id = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            salt = secrets.token_hex(16)
            info = KeyInfo(key_id, label, time.time(), salt, _digest(salt, secret))
            keys[key_id] = info
        return f"{PREFIX}_{key_id}_{secret}", info

    def list(self) -> list[KeyInfo]:
        """Every key, oldest first."""
        return sorted(self._read().values(), key=lambda k: k.created)

    def revoke(self, key_id: str) -> KeyInfo:
        """Remove the key ``key_id`` (the id shown by :meth:`list`); returns what was removed."""
        with self._locked() as keys:
            if key_id not in keys:
                raise ApiKeyError(f"no API key with id {key_id!r} in {self.path}")
            return keys.pop(key_id)

    def __len__(self) -> int:
        return len(self._read())

    def check(self, key: str) -> str | None:
        """The id of the valid key ``key``, else None (constant-time digest comparison)."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        info = self._read().get(parts[1])
        if info is None:
            return None
        ok = hmac.compare_digest(_digest(info.salt, parts[2]), info.digest)
        return info.key_id if ok else None
