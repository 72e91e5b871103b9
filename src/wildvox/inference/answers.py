"""What the API answers: a verification, an identification with its candidates, and one
embedded input. Plain frozen dataclasses (``dataclasses.asdict`` gives the CLI's JSON)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Candidate", "Embedded", "Identification", "Verification"]


@dataclass(frozen=True)
class Verification:
    """The answer to "same speaker?": the model's ``score`` (the cosine AS-normalised against
    the model's cohort when it ships one, else the ``cosine``), calibrated ``llr`` (natural
    log), ``accept`` at ``operating_point`` (LLR >= ``threshold``), and how much to trust it."""

    score: float
    cosine: float
    llr: float
    accept: bool
    threshold: float
    operating_point: str
    durations: tuple[float, float]
    reliable: bool
    note: str = ""
    speech: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Candidate:
    """An enrolled speaker: the model's score against it (as in :class:`Verification`), the
    raw cosine and the calibrated LLR."""

    name: str
    score: float
    cosine: float
    llr: float


@dataclass(frozen=True)
class Identification:
    """Top-k enrolled speakers; ``speaker`` is the best one when it passes the operating point,
    else ``None`` (an unknown speaker)."""

    candidates: list[Candidate]
    speaker: str | None
    threshold: float
    operating_point: str
    duration: float
    reliable: bool
    note: str = ""
    speech: float = 0.0


@dataclass(frozen=True)
class Embedded:
    """One input's ``embedding`` (D,), its ``duration`` and the seconds of ``speech`` the VAD
    found in it (NaN when not measured)."""

    embedding: np.ndarray
    duration: float
    speech: float
    source: str
