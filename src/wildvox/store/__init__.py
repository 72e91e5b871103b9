"""Enrolled-speaker store (SQLite) and top-k cosine search over speaker embeddings."""

from wildvox.store.live_index import LiveIndex, SpeakerMatrix
from wildvox.store.schema import (
    SpeakerConflict,
    SpeakerRecord,
    StoreError,
    StoreModelMismatch,
    UnknownSpeaker,
    UtteranceSet,
    pool_utterances,
)
from wildvox.store.search import INDEXES, ApproxIndex, ExactIndex, VectorIndex, build_index
from wildvox.store.sqlite_store import SpeakerStore
from wildvox.store.transfer import ImportSummary

__all__ = [
    "INDEXES",
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
    "pool_utterances",
]
