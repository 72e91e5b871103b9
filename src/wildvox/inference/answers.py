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
    log), ``accept`` at ``operating_point`` (LLR >= ``threshold``), and how much to trust it.

    An uncalibrated model (``calibrated`` false) has no LLR (``llr`` None): ``accept`` is
    ``score >= threshold``, a generic score threshold that no data fitted."""

    score: float
    cosine: float
    llr: float | None
    accept: bool
    threshold: float
    operating_point: str
    durations: tuple[float, float]
    reliable: bool
    note: str = ""
    speech: tuple[float, float] = (0.0, 0.0)
    calibrated: bool = True


@dataclass(frozen=True)
class Candidate:
    """An enrolled speaker: the model's score against it (as in :class:`Verification`), the
    raw cosine and the calibrated LLR (None for an uncalibrated model)."""

    name: str
    score: float
    cosine: float
    llr: float | None


@dataclass(frozen=True)
class Identification:
    """Top-k enrolled speakers, ranked by the quantity the threshold applies to (the calibrated
    LLR; the score when ``calibrated`` is false); ``speaker`` is the best one when it passes the
    operating point, else ``None`` (an unknown speaker, or ``multiple_speakers``: the input's
    windows hold more than one voice; None when it is too short to tell)."""

    candidates: list[Candidate]
    speaker: str | None
    threshold: float
    operating_point: str
    duration: float
    reliable: bool
    note: str = ""
    speech: float = 0.0
    calibrated: bool = True
    multiple_speakers: bool | None = None


@dataclass(frozen=True)
class Embedded:
    """One input's ``embedding`` (D,), its ``duration`` and the seconds of ``speech`` the VAD
    found in it (NaN when not measured); with windows asked for, ``windows`` (W, D) are the
    embeddings of its consecutive ``window_seconds`` windows (None otherwise)."""

    embedding: np.ndarray
    duration: float
    speech: float
    source: str
    windows: np.ndarray | None = None
    window_seconds: float = 0.0
