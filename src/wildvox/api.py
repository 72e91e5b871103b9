"""The Python API: ``load_model()`` -> embed / verify / enroll / identify.

Example (the shipped model, offline)::

    import wildvox
    model = wildvox.load_model()
    model.verify("a.wav", "b.wav").accept
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from wildvox.audio.io import (
    AudioError,
)
from wildvox.inference.answers import Candidate, Embedded, Identification, Verification
from wildvox.inference.embedding import (
    BLOCK_SECONDS,
    MAX_SECONDS,
    MIN_SECONDS,
    Audio,
    AudioEmbedder,
)
from wildvox.inference.model_io import ModelFileError, load_exported
from wildvox.inference.onnx_runtime import ONNX_FILE, load_onnx_embedder
from wildvox.scoring.calibration import SHORT_SECONDS, Calibration
from wildvox.scoring.cohort import ScoreCohort
from wildvox.scoring.cosine import cosine_score_pairs, length_normalize
from wildvox.store import SpeakerStore, check_top_k, normalize_name

if TYPE_CHECKING:
    from wildvox.diarize.segments import Segments

logger = logging.getLogger(__name__)

PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "default"
#: least speech (Silero VAD) for a decision: less is refused by enroll, and verify / identify
#: answer ``reliable: false`` and reject. Every real wildmix clip of >= 0.5 s had >= 0.22 s;
#: white, coloured or DC noise, dither, tones and clicks have none.
MIN_SPEECH_SECONDS = 0.2
#: identify looks for a second voice in windows of this many seconds, in inputs holding at
#: least ``MIN_WINDOWS`` of them (shorter inputs: ``multiple_speakers`` is None).
WINDOW_SECONDS = 3.0
MIN_WINDOWS = 4
#: an uncalibrated model decides on its score with this generic threshold (cosine, AS-Norm).
#: No data fitted it: ``wildvox calibrate-model`` gives the model LLRs and operating points.
UNCALIBRATED_THRESHOLDS = {"cosine": 0.5, "as-norm": 2.0}
#: two recordings whose embeddings are this close are the same content (refused by enroll).
DUPLICATE_COSINE = 0.9999
CALIBRATE_HINT = "run `wildvox calibrate-model --model DIR -c RECIPE` (a recipe with `calibration`)"


def default_store_path() -> Path:
    """``$WILDVOX_STORE``, else ``$XDG_DATA_HOME/wildvox/speakers.sqlite`` (~/.local/share)."""
    env = os.environ.get("WILDVOX_STORE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "wildvox" / "speakers.sqlite"


@dataclass
class SpeakerModel(AudioEmbedder):
    """A loaded speaker model with its score normalisation and calibration; see
    :func:`load_model`. Reading and embedding audio (bounded work on any input) is
    :class:`~wildvox.inference.embedding.AudioEmbedder`'s."""

    calibration: Calibration | None = None
    cohort: ScoreCohort | None = None
    store_path: Path = field(default_factory=default_store_path)
    min_speech: float = MIN_SPEECH_SECONDS
    _store: SpeakerStore | None = None

    # ------------------------------------------------------------------ scores
    @property
    def scoring(self) -> str:
        """``"as-norm"`` when the model ships a cohort, else ``"cosine"``."""
        return "as-norm" if self.cohort is not None else "cosine"

    def score(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """Scores (N,) of trials between embeddings ``emb_a`` and ``emb_b`` (N, D): cosine,
        AS-normalised against the model's cohort when it has one."""
        if self.cohort is not None:
            return self.cohort.score_pairs(emb_a, emb_b)
        return cosine_score_pairs(np.atleast_2d(emb_a), np.atleast_2d(emb_b)).astype(np.float64)

    def score_matrix(self, queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
        """Scores (Q, R) of every query (Q, D) against every reference (R, D)."""
        q, r = length_normalize(np.atleast_2d(queries)), length_normalize(np.atleast_2d(refs))
        cos = (q @ r.T).astype(np.float64)
        return cos if self.cohort is None else self.cohort.normalize_matrix(cos, q, r)

    # ------------------------------------------------------------------ decisions
    @property
    def calibrated(self) -> bool:
        """Whether the model has a calibration (LLRs and operating points)."""
        return self.calibration is not None

    def decision_threshold(self, operating_point: str = "eer") -> float:
        """The verification threshold: on the calibrated LLR at ``operating_point`` (which is
        validated), else the generic score threshold of an uncalibrated model."""
        if self.calibration is not None:
            return self.calibration.threshold(operating_point)
        return UNCALIBRATED_THRESHOLDS[self.scoring]

    def _llr(self, scores: np.ndarray, dur_a: np.ndarray, dur_b: np.ndarray) -> np.ndarray:
        """Calibrated LLRs of ``scores``; NaN for an uncalibrated model."""
        if self.calibration is None:
            return np.full(len(scores), np.nan)
        return self.calibration.llr(scores, dur_a, dur_b)

    def _uncalibrated_note(self, note: str) -> str:
        if self.calibration is not None:
            return note
        extra = f"uncalibrated model: no LLR, generic {self.scoring} threshold; {CALIBRATE_HINT}"
        return f"{note}; {extra}" if note else extra

    def multiple_speakers(self, e: Embedded, operating_point: str = "eer") -> bool | None:
        """Whether the windows of ``e`` hold two voices (None: fewer than ``MIN_WINDOWS``).

        The windows are split in two by 2-means on the unit sphere (started from the sign of
        their first principal component); two groups of >= 2 windows each whose mean embeddings
        the model rejects as the same speaker at ``operating_point`` are two voices. Measured
        with the shipped model: a 61 s mix of ls2414 and gcast-xandru-osuna is found, one of
        ls1998 and ls2609 is not (its halves score LLR 2.35, above the EER threshold)."""
        if e.windows is None or len(e.windows) < MIN_WINDOWS:
            return None
        w = length_normalize(e.windows).astype(np.float64)
        centred = w - w.mean(0)
        group = centred @ np.linalg.svd(centred, full_matrices=False)[2][0] > 0
        for _ in range(10):
            if group.all() or not group.any():
                return False
            centres = length_normalize(np.stack([w[~group].mean(0), w[group].mean(0)]))
            group = (w @ centres[1]) > (w @ centres[0])
        counts = np.array([(~group).sum(), group.sum()])
        if counts.min() < 2:
            return False
        score = self.score(centres[:1], centres[1:])
        dur = counts * e.window_seconds
        if self.calibration is None:
            return bool(score[0] < UNCALIBRATED_THRESHOLDS[self.scoring])
        llr = self.calibration.llr(score, dur[:1], dur[1:])
        return bool(llr[0] < self.calibration.threshold(operating_point))

    def _reliability(self, durations: Sequence[float], speech: Sequence[float]) -> tuple[bool, str]:
        """Whether a decision on inputs of these durations and amounts of speech can be
        trusted, and why not. Too little speech anywhere makes the decision a rejection."""
        least = min(speech)
        if least < self.min_speech:
            return False, (
                f"only {least:.2f} s of speech found (at least {self.min_speech:.2f} s needed): "
                "no decision, rejected"
            )
        short = min(durations)
        if short < SHORT_SECONDS[0]:
            return False, (
                f"input of {short:.2f} s is under {SHORT_SECONDS[0]:.0f} s: the decision is less "
                "reliable (the calibration widens its uncertainty for short speech)"
            )
        return True, ""

    def verify(
        self,
        a: Audio,
        b: Audio,
        operating_point: str = "eer",
        sample_rate: int | None = None,
    ) -> Verification:
        """Are ``a`` and ``b`` the same speaker? Score, calibrated LLR and decision.

        An input with less than ``min_speech`` seconds of speech (Silero VAD) is never
        accepted: the answer is ``accept=False, reliable=False`` with the speech found."""
        self.decision_threshold(operating_point)  # validate the point before any work
        ea, eb = self.analyse(a, sample_rate), self.analyse(b, sample_rate)
        return self.decide(ea, eb, operating_point)

    def decide(self, ea: Embedded, eb: Embedded, operating_point: str = "eer") -> Verification:
        """The verification of two inputs already embedded by :meth:`analyse` (a batch of
        pairs embeds each file once)."""
        thr = self.decision_threshold(operating_point)
        emb = np.stack([ea.embedding, eb.embedding])
        cosine = float(cosine_score_pairs(emb[:1], emb[1:])[0])
        score = float(self.score(emb[:1], emb[1:])[0])
        da, db = ea.duration, eb.duration
        llr = float(self._llr(np.array([score]), np.array([da]), np.array([db]))[0])
        reliable, note = self._reliability((da, db), (ea.speech, eb.speech))
        enough = min(ea.speech, eb.speech) >= self.min_speech
        value = llr if self.calibrated else score
        return Verification(score, cosine, llr if self.calibrated else None,
                            enough and value >= thr, thr, operating_point, (da, db), reliable,
                            self._uncalibrated_note(note), (ea.speech, eb.speech),
                            self.calibrated)  # fmt: skip

    # ------------------------------------------------------------------ speaker store
    def store(self) -> SpeakerStore:
        """The speaker store (opened on first use; refuses another model's embeddings)."""
        if self._store is None:
            self._store = SpeakerStore(self.store_path, self.model_id, self.embed_dim)
        return self._store

    def enroll(self, name: str, items: Sequence[Audio], sample_rate: int | None = None) -> int:
        """Add utterances to speaker ``name`` (created if new); returns its utterance count.

        Every input is read, checked for speech (at least ``min_speech`` seconds, else
        :class:`AudioError`) and embedded before anything is written: one bad file leaves the
        store as it was.
        """
        name = normalize_name(name)  # a bad name fails before any audio is read
        if isinstance(items, str | os.PathLike | np.ndarray):
            items = [items]
        if not items:
            raise ValueError("enroll needs at least one utterance")
        done = [self.analyse(a, sample_rate) for a in items]
        for e in done:
            if e.speech < self.min_speech:
                raise AudioError(
                    e.source,
                    f"only {e.speech:.2f} s of speech found; enrolling needs at least "
                    f"{self.min_speech:.2f} s (is it a recording of someone speaking?)",
                )
        emb = np.stack([e.embedding for e in done])
        self._refuse_duplicates(name, emb, [e.source for e in done])
        durations = np.array([e.duration for e in done], dtype=np.float32)
        sources = [
            "<array>" if isinstance(a, np.ndarray) else str(Path(a).resolve()) for a in items
        ]
        record = self.store().enroll(name, emb, durations, sources)
        return int(record.num_utterances)

    def _refuse_duplicates(self, name: str, emb: np.ndarray, sources: list[str]) -> None:
        """Refuse (ValueError) a recording given twice, or already enrolled for ``name``:
        its embedding is the same as another's (the same content under any file name)."""
        unit = length_normalize(emb)
        stored: list[str] = []
        if name in self.store():
            utts = self.store().utterances(self.store().get(name).name)
            stored = list(utts.sources)
            unit = np.concatenate([length_normalize(utts.embeddings), unit])
        sims = unit @ unit.T
        for i in range(len(stored), len(unit)):
            dup = np.flatnonzero(sims[i, :i] >= DUPLICATE_COSINE)
            if dup.size:
                j = int(dup[0])
                what = (f"already enrolled for {name} (as {stored[j]})" if j < len(stored)
                        else f"the same recording as {sources[j - len(stored)]}")  # fmt: skip
                raise ValueError(f"{sources[i - len(stored)]}: {what}; nothing was enrolled")

    def identify(
        self,
        audio: Audio,
        top_k: int = 5,
        operating_point: str = "eer",
        sample_rate: int | None = None,
    ) -> Identification:
        """The enrolled speakers closest to ``audio``; ``speaker`` is None below threshold
        (and when the input has less than ``min_speech`` seconds of speech, or holds more than
        one voice: ``multiple_speakers``, judged on ``WINDOW_SECONDS`` windows).

        The ``max(top_k, 50)`` nearest speakers by cosine are scored as the model scores (AS-
        Norm with a cohort), calibrated, and ranked by LLR, the quantity the threshold applies
        to (by score for an uncalibrated model). A ``far=X%`` operating point bounds the
        open-set rate of impostors accepted as anyone
        (:meth:`Calibration.identification_threshold`).
        """
        top_k = check_top_k(top_k)
        self.decision_threshold(operating_point)  # validate the point before any work
        store = self.store()
        if len(store) == 0:
            raise ValueError(f"{store.path}: no enrolled speakers; enroll some first")
        query = self.analyse(audio, sample_rate, window_seconds=WINDOW_SECONDS)
        return self.identify_embedded(query, top_k, operating_point)

    def identify_embedded(
        self, query: Embedded, top_k: int = 5, operating_point: str = "eer"
    ) -> Identification:
        """:meth:`identify` of an input already embedded by :meth:`analyse`."""
        store = self.store()
        hits = store.identify(query.embedding, top_k=max(top_k, 50))
        names = [n for n, _ in hits]
        cosines = np.array([s for _, s in hits])
        scores = cosines
        if self.cohort is not None and names:  # re-rank the nearest by AS-Norm
            refs = np.stack([store.speaker_embedding(n) for n in names])
            scores = self.score_matrix(query.embedding[None], refs)[0]
        enrolled = np.array([store.get(n).total_duration for n in names])  # only the hits
        llrs = self._llr(scores, enrolled, np.full(len(names), query.duration))
        ranked = llrs if self.calibrated else scores
        order = np.argsort(-ranked, kind="stable")[:top_k]
        cands = [
            Candidate(names[i], float(scores[i]), float(cosines[i]),
                      float(llrs[i]) if self.calibrated else None)
            for i in order.tolist()
        ]  # fmt: skip
        if self.calibration is not None:
            thr = self.calibration.identification_threshold(operating_point, len(store))
        else:
            thr = self.decision_threshold(operating_point)
        enough = query.speech >= self.min_speech
        several = self.multiple_speakers(query, operating_point)
        best = None
        if enough and order.size and ranked[order[0]] >= thr and not several:
            best = cands[0].name
        reliable, note = self._reliability([query.duration], [query.speech])
        if several:
            note = "; ".join(filter(None, [note, "more than one speaker in the input: no name"]))
        return Identification(cands, best, thr, operating_point, query.duration, reliable,
                              self._uncalibrated_note(note), query.speech, self.calibrated,
                              several)  # fmt: skip

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def embed_segments(
        self,
        audio: Audio,
        window: float = 3.0,
        hop: float = 1.5,
        *,
        batch_size: int = 32,
        sample_rate: int | None = None,
    ) -> Segments:
        """Per-window embeddings (N, D) with start/end times (s) of a recording of any length,
        decoded in blocks: :func:`wildvox.diarize.segments.embed_segments`."""
        from wildvox.diarize.segments import embed_segments

        return embed_segments(self, audio, window, hop, batch_size=batch_size,
                              sample_rate=sample_rate)  # fmt: skip


def load_model(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    store: str | os.PathLike[str] | None = None,
    backend: str = "auto",
) -> SpeakerModel:
    """Load an exported model (default: the one shipped inside the package; no network).

    ``backend``: ``"auto"`` runs the embedder in ONNX Runtime when the folder has an up-to-date
    ``embedder.onnx`` (``wildvox export-onnx``) and the device is the CPU, else in torch;
    ``"onnx"`` requires it; ``"torch"`` never uses it.

    Raises:
        ModelFileError: missing, corrupt or inconsistent model files.
    """
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"backend must be auto, onnx or torch, got {backend!r}")
    model_dir = Path(path) if path is not None else PRETRAINED
    exported = load_exported(model_dir, device=device)
    record = exported.extra.get("calibration")
    calibration = None
    if record is not None:
        try:
            calibration = Calibration.from_dict(record)
        except ValueError as exc:
            raise ModelFileError(
                f"{model_dir}: bad calibration record ({exc}); refit it with `wildvox "
                "calibrate-model --model DIR -c RECIPE`"
            ) from exc
    try:
        cohort = ScoreCohort.load(model_dir)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from exc
    if cohort is not None and cohort.dim != exported.net.embed_dim:
        raise ModelFileError(
            f"{model_dir}: cohort is {cohort.dim}-d, the model's embeddings "
            f"{exported.net.embed_dim}-d"
        )
    expected = "cosine" if cohort is None else f"as-norm:{cohort.digest}"
    if calibration is not None and calibration.score != expected:
        raise ModelFileError(
            f"{model_dir}: the calibration was fitted on {calibration.score} scores but the "
            f"model scores with {expected}; run `wildvox calibrate-model` again"
        )
    onnx = None
    if backend != "torch" and device == "cpu":
        try:
            onnx = load_onnx_embedder(model_dir, exported.model_id, torch.get_num_threads())
        except ValueError as exc:
            raise ModelFileError(str(exc)) from exc
    if backend == "onnx" and onnx is None:
        raise ModelFileError(
            f"{model_dir}: no up-to-date {ONNX_FILE} for the CPU; run `wildvox export-onnx`"
        )
    model = SpeakerModel(exported=exported, onnx=onnx, calibration=calibration, cohort=cohort)
    if calibration is None:
        logger.warning("model %s is not calibrated: decisions use the raw %s score with the "
                       "generic threshold %.2f and no LLR; %s", exported.model_id, model.scoring,
                       UNCALIBRATED_THRESHOLDS[model.scoring], CALIBRATE_HINT)  # fmt: skip
    if store is not None:
        model.store_path = Path(store)
    return model


__all__ = [
    "BLOCK_SECONDS",
    "MAX_SECONDS",
    "MIN_SECONDS",
    "MIN_SPEECH_SECONDS",
    "PRETRAINED",
    "AudioError",
    "Candidate",
    "Embedded",
    "Identification",
    "SpeakerModel",
    "Verification",
    "load_model",
]
