"""Enrolled-speaker store (SQLite) and top-k cosine search over speaker embeddings."""

from wildvox.store.live_index import LiveIndex, SpeakerMatrix
from wildvox.store.names import MAX_NAME_LENGTH, name_key, normalize_name
from wildvox.store.schema import (
    SpeakerConflict,
    SpeakerRecord,
    StoreError,
    StoreModelMismatch,
    UnknownSpeaker,
    UtteranceSet,
)
from wildvox.store.search import (
    INDEXES,
    ApproxIndex,
    ExactIndex,
    VectorIndex,
    build_index,
    check_top_k,
)
from wildvox.store.sqlite_store import SpeakerStore
from wildvox.store.transfer import ImportSummary

__all__ = [
    "INDEXES",
    "MAX_NAME_LENGTH",
    "ApproxIndex",
    "ExactIndex",
    "ImportSummary",
    "LiveIndex",
    "SpeakerConflict",
    "SpeakerMatrix",
    "SpeakerRecord",
    "SpeakerStore",
    "StoreError",
    "StoreModelMismatch",
    "UnknownSpeaker",
    "UtteranceSet",
    "VectorIndex",
    "build_index",
    "check_top_k",
    "name_key",
    "normalize_name",
]
