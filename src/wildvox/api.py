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

import numpy as np
import torch

from wildvox.audio.io import AudioError, load_audio, validate_waveform
from wildvox.inference.calibration import SHORT_SECONDS, ModelCalibration
from wildvox.inference.cohort import ScoreCohort
from wildvox.inference.model_io import ExportedModel, ModelFileError, load_exported
from wildvox.inference.onnx_runtime import ONNX_FILE, OnnxEmbedder, load_onnx_embedder
from wildvox.scoring.cosine import cosine_score_pairs, length_normalize
from wildvox.store.sqlite_store import SpeakerStore

logger = logging.getLogger(__name__)

Audio = str | os.PathLike[str] | np.ndarray
PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "default"
MIN_SECONDS = 0.5


def default_store_path() -> Path:
    """``$WILDVOX_STORE``, else ``$XDG_DATA_HOME/wildvox/speakers.sqlite`` (~/.local/share)."""
    env = os.environ.get("WILDVOX_STORE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "wildvox" / "speakers.sqlite"


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


@dataclass
class SpeakerModel:
    """A loaded speaker model with its score normalisation and calibration; see
    :func:`load_model`."""

    exported: ExportedModel
    calibration: ModelCalibration | None
    cohort: ScoreCohort | None = None
    onnx: OnnxEmbedder | None = None
    store_path: Path = field(default_factory=default_store_path)
    min_seconds: float = MIN_SECONDS
    _store: SpeakerStore | None = None

    @property
    def model_id(self) -> str:
        return self.exported.model_id

    @property
    def embed_dim(self) -> int:
        return self.exported.net.embed_dim

    @property
    def sample_rate(self) -> int:
        return self.exported.config.features.sample_rate

    @property
    def backend(self) -> str:
        """``"onnx"`` (ONNX Runtime runs the embedder) or ``"torch"``."""
        return "onnx" if self.onnx is not None else "torch"

    def set_threads(self, threads: int) -> None:
        """CPU threads for embedding (torch, and the ONNX Runtime session when there is one)."""
        torch.set_num_threads(threads)
        if self.onnx is not None and self.onnx.threads != threads:
            self.onnx = OnnxEmbedder(self.onnx.path, threads)

    # ------------------------------------------------------------------ audio + embeddings
    def load(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        """A path or an array -> float32 mono waveform at the model's rate, validated."""
        if isinstance(audio, np.ndarray):
            return validate_waveform(
                audio,
                sample_rate or self.sample_rate,
                target_rate=self.sample_rate,
                min_duration=self.min_seconds,
            )
        return load_audio(audio, sample_rate=self.sample_rate, min_duration=self.min_seconds)

    def _embed_waves(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        lengths = torch.tensor([len(w) for w in waves])
        batch = torch.zeros(len(waves), int(lengths.max()))
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(w)
        net = self.exported.net
        with torch.inference_mode():
            if self.onnx is None:
                return net(batch, lengths).numpy().astype(np.float32)
            feats, frames = net.features(batch, lengths)
        return self.onnx(feats.numpy(), frames.numpy())

    def embed(self, audio: Audio, sample_rate: int | None = None) -> np.ndarray:
        """One utterance -> its (D,) float32 embedding."""
        return self._embed_waves([self.load(audio, sample_rate)])[0]

    def embed_batch(
        self, items: Sequence[Audio], sample_rate: int | None = None, batch_size: int = 16
    ) -> np.ndarray:
        """Several utterances -> (N, D) float32, batched by similar length."""
        waves = [self.load(a, sample_rate) for a in items]
        order = np.argsort([len(w) for w in waves])
        out = np.zeros((len(waves), self.embed_dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._embed_waves([waves[i] for i in idx])
        return out

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
    def _calibration(self) -> ModelCalibration:
        if self.calibration is None:
            raise ModelFileError(
                f"model {self.model_id} has no calibration; run `wildvox calibrate` on it first"
            )
        return self.calibration

    @staticmethod
    def _reliability(*durations: float) -> tuple[bool, str]:
        short = min(durations)
        if short < SHORT_SECONDS:
            return False, (
                f"input of {short:.2f} s is under {SHORT_SECONDS:.0f} s: the decision is less "
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
        """Are ``a`` and ``b`` the same speaker? Score, calibrated LLR and decision."""
        cal = self._calibration()
        wa, wb = self.load(a, sample_rate), self.load(b, sample_rate)
        emb = length_normalize(self._embed_waves([wa, wb]))
        cosine = float(emb[0] @ emb[1])
        score = float(self.score(emb[:1], emb[1:])[0])
        da, db = len(wa) / self.sample_rate, len(wb) / self.sample_rate
        llr = float(cal.llr(np.array([score]), np.array([da]), np.array([db]))[0])
        thr = cal.threshold(operating_point)
        reliable, note = self._reliability(da, db)
        return Verification(
            score, cosine, llr, llr >= thr, thr, operating_point, (da, db), reliable, note
        )

    # ------------------------------------------------------------------ speaker store
    def store(self) -> SpeakerStore:
        """The speaker store (opened on first use; refuses another model's embeddings)."""
        if self._store is None:
            self._store = SpeakerStore(self.store_path, self.model_id, self.embed_dim)
        return self._store

    def enroll(self, name: str, items: Sequence[Audio], sample_rate: int | None = None) -> int:
        """Add utterances to speaker ``name`` (created if new); returns its utterance count.

        Every input is read and embedded before anything is written: one bad file leaves the
        store as it was.
        """
        if isinstance(items, str | os.PathLike | np.ndarray):
            items = [items]
        if not items:
            raise ValueError("enroll needs at least one utterance")
        waves = [self.load(a, sample_rate) for a in items]
        emb = self._embed_waves(waves) if len(waves) == 1 else self.embed_batch(waves)
        durations = np.array([len(w) / self.sample_rate for w in waves], dtype=np.float32)
        sources = [
            "<array>" if isinstance(a, np.ndarray) else str(Path(a).resolve()) for a in items
        ]
        record = self.store().enroll(name, emb, durations, sources)
        return int(record.num_utterances)

    def identify(
        self,
        audio: Audio,
        top_k: int = 5,
        operating_point: str = "eer",
        sample_rate: int | None = None,
    ) -> Identification:
        """The enrolled speakers closest to ``audio``; ``speaker`` is None below threshold.

        With a cohort, the ``max(top_k, 50)`` nearest speakers by cosine are re-ranked by their
        AS-normalised score. A ``far=X%`` operating point bounds the open-set rate of impostors
        accepted as anyone (:meth:`ModelCalibration.identification_threshold`).
        """
        cal = self._calibration()
        store = self.store()
        if len(store) == 0:
            raise ValueError(f"{store.path}: no enrolled speakers; enroll some first")
        wave = self.load(audio, sample_rate)
        duration = len(wave) / self.sample_rate
        query = self._embed_waves([wave])[0]
        hits = store.identify(query, top_k=top_k if self.cohort is None else max(top_k, 50))
        names = [n for n, _ in hits]
        cosines = np.array([s for _, s in hits])
        scores = cosines
        if self.cohort is not None:
            all_names, matrix = store.matrix()
            row = {n: i for i, n in enumerate(all_names)}
            refs = matrix[[row[n] for n in names]]
            scores = self.score_matrix(query[None], refs)[0]
            order = np.argsort(-scores, kind="stable")[:top_k]
            names = [names[i] for i in order]
            scores, cosines = scores[order], cosines[order]
        enrolled = {r.name: r.total_duration for r in store.list_speakers()}
        llrs = cal.llr(
            scores, np.array([enrolled[n] for n in names]), np.full(len(names), duration)
        )
        cands = [
            Candidate(n, float(s), float(c), float(v))
            for n, s, c, v in zip(names, scores, cosines, llrs, strict=True)
        ]
        thr = cal.identification_threshold(operating_point, len(store))
        best = cands[0].name if cands and cands[0].llr >= thr else None
        reliable, note = self._reliability(duration)
        return Identification(cands, best, thr, operating_point, duration, reliable, note)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


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
            calibration = ModelCalibration.from_dict(record)
        except ValueError as exc:
            raise ModelFileError(f"{model_dir}: bad calibration record ({exc})") from exc
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
    model = SpeakerModel(exported, calibration, cohort, onnx)
    if store is not None:
        model.store_path = Path(store)
    return model


__all__ = [
    "AudioError",
    "Candidate",
    "Identification",
    "SpeakerModel",
    "Verification",
    "load_model",
]
