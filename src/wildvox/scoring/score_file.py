"""Score files: ``enrol test score [label]`` lines, one trial a line.

Label 1 is a target, 0 a non-target; every line has one or none. Written by ``wildvox score``,
``normalize``, ``calibrate --apply`` and ``fuse``; read by those and ``wildvox evaluate``. This
module is the one reader and writer: the reader names the file and line of any problem (a
missing field, a score that is not a finite number, a bad label, a mix of labeled and
unlabeled lines), the writer is atomic and refuses NaN/inf scores.

>>> import tempfile
>>> from pathlib import Path
>>> p = Path(tempfile.mkdtemp()) / "scores.txt"
>>> write_score_file(p, ["a/1.wav"], ["b/2.wav"], [0.25], [0])
>>> p.read_text().splitlines()
['a/1.wav b/2.wav 0.250000 0']
>>> read_score_file(p).scores.tolist()
[0.25]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from wildvox.data.files import atomic_write

__all__ = [
    "ScoreFile",
    "ScoreFileError",
    "align_score_files",
    "read_score_file",
    "write_score_file",
]


class ScoreFileError(ValueError):
    """A score file that is missing, malformed, or lacks the labels a step needs."""


@dataclass
class ScoreFile:
    """Trials ``enroll[i]`` vs ``test[i]``: ``scores`` (N,) float64, ``labels`` (N,) int64
    (1 / 0, or -1 on every line of an unlabeled file)."""

    enroll: list[str]
    test: list[str]
    scores: np.ndarray
    labels: np.ndarray
    path: str = "<scores>"

    @property
    def labeled(self) -> bool:
        return bool((self.labels >= 0).all())

    def require_labels(self) -> np.ndarray:
        """The (N,) labels; :class:`ScoreFileError` when the file has none."""
        if not self.labeled:
            raise ScoreFileError(
                f"{self.path}: this step needs labeled trials ('enrol test score label' lines)"
            )
        return self.labels


def read_score_file(path: str | Path) -> ScoreFile:
    """Parse a score file; :class:`ScoreFileError` naming the file and line on bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScoreFileError(f"{path}: cannot read score file ({exc.strerror})") from None
    enroll, test, scores, labels = [], [], [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) not in (3, 4):
            raise ScoreFileError(f"{path}:{lineno}: expected 'enrol test score [label]': {line!r}")
        try:
            s = float(f[2])
        except ValueError:
            raise ScoreFileError(f"{path}:{lineno}: score {f[2]!r} is not a number") from None
        if not np.isfinite(s):
            raise ScoreFileError(f"{path}:{lineno}: score is {f[2]} (NaN/inf scores not allowed)")
        if len(f) == 4 and f[3] not in ("0", "1"):
            raise ScoreFileError(f"{path}:{lineno}: label must be 0 or 1, got {f[3]!r}")
        enroll.append(f[0])
        test.append(f[1])
        scores.append(s)
        labels.append(int(f[3]) if len(f) == 4 else -1)
    if not enroll:
        raise ScoreFileError(f"{path}: score file is empty")
    lab = np.asarray(labels, dtype=np.int64)
    if (lab < 0).any() and (lab >= 0).any():
        raise ScoreFileError(
            f"{path}: {int((lab < 0).sum())} of {lab.size} lines have no label (all or none)"
        )
    return ScoreFile(enroll, test, np.asarray(scores, dtype=np.float64), lab, str(path))


def write_score_file(
    path: str | Path,
    enroll: Sequence[str],
    test: Sequence[str],
    scores: ArrayLike,
    labels: ArrayLike,
) -> None:
    """Write ``enrol test score [label]`` lines atomically; negative labels are left out."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.int64)
    if not (s.shape == lab.shape == (len(enroll),) and len(test) == len(enroll)):
        raise ValueError(
            f"{len(enroll)}/{len(test)} trial ids, scores {s.shape}, labels {lab.shape}"
        )
    if not np.isfinite(s).all():
        raise ValueError(f"{path}: refusing to write {int((~np.isfinite(s)).sum())} NaN/inf scores")
    lines = [
        f"{e} {t} {v:.6f}" + (f" {k}" if k >= 0 else "")
        for e, t, v, k in zip(enroll, test, s.tolist(), lab.tolist(), strict=True)
    ]
    atomic_write(path, "\n".join(lines) + "\n")


def align_score_files(files: Sequence[ScoreFile]) -> tuple[np.ndarray, np.ndarray]:
    """Scores of S files on the first file's trials, (N, S), and their labels (N,) (-1: none).

    Every file must hold the same (enrol, test) trials, in any order, each once; labels, where
    two files both have them, must agree.
    """
    ref = files[0]
    keys = list(zip(ref.enroll, ref.test, strict=True))
    out = np.empty((len(keys), len(files)))
    labels = np.full(len(keys), -1, dtype=np.int64)
    for j, f in enumerate(files):
        pos = {k: i for i, k in enumerate(zip(f.enroll, f.test, strict=True))}
        if len(pos) != len(f.enroll):
            raise ScoreFileError(f"{f.path}: {len(f.enroll) - len(pos)} repeated trial(s)")
        missing = [k for k in keys if k not in pos]
        if missing or len(pos) != len(keys):
            raise ScoreFileError(
                f"{f.path}: trials differ from {ref.path} ({len(f.enroll)} vs {len(keys)} "
                f"trials; {len(missing)} of {ref.path}'s missing, e.g. {missing[:2]})"
            )
        rows = np.fromiter((pos[k] for k in keys), np.int64, len(keys))
        out[:, j] = f.scores[rows]
        if f.labeled:
            if (labels >= 0).all() and (labels != f.labels[rows]).any():
                raise ScoreFileError(f"{f.path}: labels disagree with the other score files")
            labels = f.labels[rows]
    return out, labels
