"""The shipped model at work on a corpus: calibrated verification, then enrolment and
open-set identification of held-out utterances, each with measured figures.

Embeddings of the trial list's utterances are computed once and shared by every step.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from wildvox.api import SpeakerModel
from wildvox.data.corpora.voxceleb import speaker_of
from wildvox.data.trials import read_trials
from wildvox.metrics.identification import top_k_accuracy
from wildvox.metrics.verification import (
    compute_actual_dcf,
    compute_cllr,
    verification_report,
)
from wildvox.scoring.calibration import NAMED_POINTS, SHORT_SECONDS, Calibration
from wildvox.scoring.cosine import cosine_score_pairs
from wildvox.scoring.embeddings import EmbeddingSet
from wildvox.store.sqlite_store import SpeakerStore

logger = logging.getLogger(__name__)


def operating_point_table(
    cal: Calibration, llr: np.ndarray, labels: np.ndarray
) -> list[dict[str, Any]]:
    """False-accept and false-reject rates reached at each named point, next to its target."""
    rows = []
    for point in NAMED_POINTS:
        thr = cal.threshold(point)
        far = float(np.mean(llr[labels == 0] >= thr))
        frr = float(np.mean(llr[labels == 1] < thr))
        target = point.split("=", 1)[1] if point.startswith("far=") else "-"
        rows.append({"point": point, "threshold": thr, "far": far, "frr": frr, "target": target})
    return rows


def verification_section(
    model: SpeakerModel, emb: EmbeddingSet, trials_path: Path
) -> dict[str, Any]:
    trials = read_trials(trials_path)
    e, t = emb.index(trials.enroll), emb.index(trials.test)
    x = emb.embeddings
    cosine = cosine_score_pairs(x[e], x[t])
    labels = trials.labels
    out: dict[str, Any] = {"cosine": verification_report(cosine, labels)}
    scores = cosine
    if model.cohort is not None:  # the scores the product decides on
        scores = model.score(x[e], x[t])
        name = f"AS-Norm (cohort of {len(model.cohort.embeddings)}, top {model.cohort.top_n})"
        out[name] = verification_report(scores, labels)
    if emb.durations is None:
        raise ValueError("the showcase needs embeddings with durations")
    cut = SHORT_SECONDS[0]
    short = (emb.durations[e] < cut) & (emb.durations[t] < cut)
    if short.any() and labels[short].min() != labels[short].max():
        name = f"{model.scoring}, both sides < {cut:g} s"
        out[name] = verification_report(scores[short], labels[short])
    if model.calibration is not None:
        llr = model.calibration.llr(scores, emb.durations[e], emb.durations[t])
        out["calibrated"] = {
            "cllr": compute_cllr(llr, labels),
            "actual_dcf_0.01": compute_actual_dcf(llr, labels, p_target=0.01),
            "actual_dcf_0.05": compute_actual_dcf(llr, labels, p_target=0.05),
        }
        out["operating_points"] = operating_point_table(model.calibration, llr, labels)
    return out


def identification_section(
    model: SpeakerModel,
    emb: EmbeddingSet,
    store_path: Path,
    enroll_per_speaker: int = 3,
    impostor_every: int = 4,
) -> dict[str, Any]:
    """Enroll each speaker's first utterances (every ``impostor_every``-th speaker is kept out as
    an unknown impostor), then identify all other utterances, open-set."""
    by_spk: dict[str, list[int]] = defaultdict(list)
    for i, uid in enumerate(emb.ids):
        by_spk[speaker_of(uid)].append(i)
    speakers = sorted(by_spk)
    impostors = set(speakers[::impostor_every])
    if emb.durations is None:
        raise ValueError("the showcase needs embeddings with durations")
    store_path.unlink(missing_ok=True)
    queries: list[tuple[int, str | None]] = []
    with SpeakerStore(store_path, model.model_id, model.embed_dim) as store:
        for spk in speakers:
            idx = sorted(by_spk[spk], key=lambda i: emb.ids[i])
            if spk in impostors:
                queries += [(i, None) for i in idx]
                continue
            enrol, rest = idx[:enroll_per_speaker], idx[enroll_per_speaker:]
            store.enroll(spk, emb.embeddings[enrol], emb.durations[enrol],
                         [emb.ids[i] for i in enrol])  # fmt: skip
            queries += [(i, spk) for i in rest]
        enrolled = {r.name: r.total_duration for r in store.list_speakers()}
        names, matrix = store.matrix()
    q = np.array([i for i, _ in queries])
    truth = [s for _, s in queries]
    sims = model.score_matrix(emb.embeddings[q], matrix)
    order = np.argsort(-sims, axis=1)
    top1 = [names[j] for j in order[:, 0]]
    known = np.array([s is not None for s in truth])
    hit1 = np.array([t == p for t, p in zip(truth, top1, strict=True)])
    column = {n: j for j, n in enumerate(names)}
    known_labels = np.array([column[t] for t in truth if t is not None])
    out: dict[str, Any] = {
        "enrolled speakers": len(names),
        "impostor speakers": len(impostors),
        "utterances per enrolment": enroll_per_speaker,
        "queries (known / impostor)": f"{int(known.sum())} / {int((~known).sum())}",
        "closed-set top-1": top_k_accuracy(sims[known], known_labels, 1),
        "closed-set top-5": top_k_accuracy(sims[known], known_labels, min(5, len(names))),
    }
    if model.calibration is not None:
        best = sims[np.arange(len(q)), order[:, 0]]
        llr = model.calibration.llr(best, np.array([enrolled[n] for n in top1]), emb.durations[q])
        for point in ("eer", "far=1%"):
            accept = llr >= model.calibration.identification_threshold(point, len(names))
            out[f"open-set @ {point}: correct"] = float(
                np.mean(np.where(known, accept & hit1, ~accept))
            )
            out[f"open-set @ {point}: impostors accepted"] = float(accept[~known].mean())
    return out


def run_showcase(
    model: SpeakerModel, emb: EmbeddingSet, trials_path: Path, store_path: Path
) -> dict[str, Any]:
    """Every figure of the product demo, from embeddings of the trial list's utterances."""
    return {
        "verification": verification_section(model, emb, trials_path),
        "identification": identification_section(model, emb, store_path),
    }
