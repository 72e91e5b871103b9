"""Export file format of a speaker store: JSON lines, embeddings as base64 float32.

The first line is a header, then one line per speaker::

    {"format": "wildvox-speaker-store", "version": 1, "model_id": "...", "embed_dim": 256}
    {"name": "ann", "created": 1.7e9, "updated": 1.7e9,
     "utterances": [{"source": "a.wav", "duration": 3.2, "created": 1.7e9,
                     "embedding": "<base64 of embed_dim little-endian float32>"}]}

Reading validates the whole file (header, model, every name and embedding) before anything is
written to a store, and names the file and line of the first problem. Names follow the store's
rules (:mod:`wildvox.store.names`): they are normalised, empty or control-character names are
refused, and two lines whose names are look-alikes (``ann`` and ``Ann``) are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wildvox.data.files import atomic_path
from wildvox.store.names import name_key, normalize_name
from wildvox.store.schema import StoreError, StoreModelMismatch, UtteranceSet, validate_utterances

logger = logging.getLogger(__name__)

FORMAT = "wildvox-speaker-store"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExportedSpeaker:
    """One speaker of an export file; times in Unix seconds."""

    name: str
    created: float
    updated: float
    utterances: UtteranceSet


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: speakers added new, merged into or replacing existing ones."""

    added: int
    merged: int
    replaced: int
    utterances: int


def write_export(
    path: str | Path, model_id: str, embed_dim: int, speakers: Iterable[ExportedSpeaker]
) -> int:
    """Write ``speakers`` to ``path`` atomically (:func:`wildvox.data.files.atomic_path`).

    Returns the number of speakers written. Raises :class:`StoreError` naming ``path`` when it
    cannot be written (its folder is a file, say); an existing file there is left as it was.
    """
    path = Path(path)
    try:
        count = _write_lines(path, model_id, embed_dim, speakers)
    except OSError as err:
        raise StoreError(path, f"cannot write export file: {err.strerror or err}") from err
    logger.info("exported %d speakers to %s", count, path)
    return count


def _write_lines(
    path: Path, model_id: str, embed_dim: int, speakers: Iterable[ExportedSpeaker]
) -> int:
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model_id": model_id,
            "embed_dim": embed_dim,
        }
        fh.write(json.dumps(header) + "\n")
        for sp in speakers:
            utts = sp.utterances
            line = {
                "name": sp.name,
                "created": sp.created,
                "updated": sp.updated,
                "utterances": [
                    {
                        "source": src,
                        "duration": float(dur),
                        "created": float(created),
                        "embedding": base64.b64encode(emb.astype("<f4").tobytes()).decode(),
                    }
                    for src, dur, created, emb in zip(
                        utts.sources, utts.durations, utts.created, utts.embeddings, strict=True
                    )
                ],
            }
            fh.write(json.dumps(line) + "\n")
            count += 1
    return count


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj or not isinstance(obj[key], kind) or isinstance(obj[key], bool):
        raise ValueError(f"{where}: field {key!r} missing or of the wrong type")
    if isinstance(obj[key], float) and not math.isfinite(obj[key]):
        raise ValueError(f"{where}: field {key!r} is not a finite number")
    return obj[key]


def _parse_speaker(obj: Any, embed_dim: int, where: str) -> ExportedSpeaker:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object")
    try:
        name = normalize_name(_field(obj, "name", str, where))
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    utts = _field(obj, "utterances", list, where)
    if not utts:
        raise ValueError(f"{where}: speaker {name!r} has no utterances")
    blobs, durations, sources, created = [], [], [], []
    for u in utts:
        if not isinstance(u, dict):
            raise ValueError(f"{where}: utterance entries must be JSON objects")
        try:
            blob = base64.b64decode(_field(u, "embedding", str, where), validate=True)
        except binascii.Error as err:
            raise ValueError(f"{where}: embedding is not valid base64") from err
        if len(blob) != 4 * embed_dim:
            raise ValueError(f"{where}: embedding has {len(blob) // 4} values, not {embed_dim}")
        blobs.append(blob)
        durations.append(_field(u, "duration", (int, float), where))
        sources.append(_field(u, "source", str, where))
        created.append(float(_field(u, "created", (int, float), where)))
    emb = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), embed_dim)
    try:
        emb32, dur, srcs = validate_utterances(emb, durations, sources, embed_dim)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from err
    return ExportedSpeaker(
        name=name,
        created=float(_field(obj, "created", (int, float), where)),
        updated=float(_field(obj, "updated", (int, float), where)),
        utterances=UtteranceSet(srcs, dur, emb32, np.array(created, dtype=np.float64)),
    )


def read_export(path: str | Path, model_id: str, embed_dim: int) -> list[ExportedSpeaker]:
    """Parse and validate an export file made for ``model_id`` / ``embed_dim``.

    Raises:
        StoreModelMismatch: the file holds another model's embeddings.
        StoreError: unreadable file, wrong format, bad line (named), duplicate speaker names.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise StoreError(path, f"cannot read export file: {err}") from err
    try:
        header = json.loads(lines[0]) if lines else None
    except (json.JSONDecodeError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StoreError(path, f"not a {FORMAT} export (bad or missing header line)")
    if header.get("version") != FORMAT_VERSION:
        raise StoreError(path, f"export format version {header.get('version')!r} not supported")
    file_dim = header.get("embed_dim")
    if not isinstance(header.get("model_id"), str) or not isinstance(file_dim, int):
        raise StoreError(path, "header lacks a string model_id and an integer embed_dim")
    stored = (str(header["model_id"]), file_dim)
    if stored != (model_id, embed_dim):
        raise StoreModelMismatch(path, stored, (model_id, embed_dim))
    speakers: list[ExportedSpeaker] = []
    seen: dict[str, tuple[int, str]] = {}  # name key -> (line, name)
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            sp = _parse_speaker(json.loads(line), embed_dim, f"line {lineno}")
        except json.JSONDecodeError as err:
            raise StoreError(path, f"line {lineno}: invalid JSON ({err.msg})") from err
        except RecursionError as err:
            raise StoreError(path, f"line {lineno}: JSON nested too deeply to read") from err
        except ValueError as err:
            raise StoreError(path, str(err)) from err
        key = name_key(sp.name)
        if key in seen:
            first, other = seen[key]
            raise StoreError(
                path, f"line {lineno}: speaker {sp.name!r} is already on line {first} ({other!r})"
            )
        seen[key] = (lineno, sp.name)
        speakers.append(sp)
    return speakers
