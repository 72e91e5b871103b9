"""Verification trial lists.

Formats read: VoxCeleb's ``veri_test.txt``/``veri_test2.txt``/``List_of_trial_pairs`` and the
VoxCeleb1-E/H lists (``<label> <enrol> <test>``, 1 = same speaker), unlabeled ``<enrol> <test>``
lists, and Kaldi/NIST style ``<enrol> <test> target|nontarget``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_WORD_LABELS = {"target": 1, "nontarget": 0}


class TrialError(ValueError):
    """A trial list that cannot be parsed."""


@dataclass(frozen=True)
class Trials:
    """A trial list: ``enroll[i]`` vs ``test[i]`` with ``labels[i]`` (1 target, 0 non-target,
    -1 unknown)."""

    enroll: list[str]
    test: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.enroll)

    @property
    def labeled(self) -> bool:
        return bool(np.all(self.labels >= 0))

    def utterances(self) -> list[str]:
        """Every utterance id the list names, once, in first-seen order."""
        return list(dict.fromkeys(self.enroll + self.test))


def read_trials(path: str | Path) -> Trials:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrialError(f"{path}: cannot read trial list ({exc.strerror})") from exc
    enroll: list[str] = []
    test: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 3 and fields[0] in ("0", "1"):
            label, e, t = int(fields[0]), fields[1], fields[2]
        elif len(fields) == 3 and fields[2] in _WORD_LABELS:
            e, t, label = fields[0], fields[1], _WORD_LABELS[fields[2]]
        elif len(fields) == 2:
            e, t, label = fields[0], fields[1], -1
        else:
            raise TrialError(f"{path}:{lineno}: cannot parse trial line {line!r}")
        enroll.append(e)
        test.append(t)
        labels.append(label)
    if not enroll:
        raise TrialError(f"{path}: trial list is empty")
    arr = np.asarray(labels, dtype=np.int64)
    if np.any(arr < 0) and np.any(arr >= 0):
        raise TrialError(f"{path}: some trials are labeled and some are not")
    return Trials(enroll=enroll, test=test, labels=arr)
