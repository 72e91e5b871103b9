"""The utterance record shared by every reader, and the speaker-to-index map."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Utterance:
    """One audio file.

    ``id`` is the path relative to the corpus' ``wav/`` folder (the id used in trial lists),
    ``speaker`` the speaker label, unique across corpora (``<corpus>/<speaker>``) when the
    utterance comes from a training manifest.
    """

    id: str
    path: Path
    speaker: str
    corpus: str = ""
    split: int = 0


class SpeakerMap:
    """A stable speaker label <-> class index map, derived from the data and saved with a model.

    >>> m = SpeakerMap.from_labels(["b", "a", "b"])
    >>> m.labels, m.index("b"), len(m)
    (['a', 'b'], 1, 2)
    """

    def __init__(self, labels: Sequence[str]) -> None:
        if len(set(labels)) != len(labels):
            raise ValueError("speaker labels must be unique")
        self.labels = list(labels)
        self._index = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> SpeakerMap:
        return cls(sorted(set(labels)))

    def index(self, label: str) -> int:
        try:
            return self._index[label]
        except KeyError:
            raise KeyError(f"speaker {label!r} is not in the speaker map") from None

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index
