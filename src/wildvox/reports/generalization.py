"""How a speaker model generalises, measured the way users meet it (issue #13).

On a labelled trial list and the embeddings of its utterances, for any scoring function:

- :func:`subset_metrics`: EER and MinDCF(0.01) pooled, on both-sides-short and both-sides-long
  trials, and per source group of the speakers (e.g. LibriSpeech vs GCompris in wildmix);
- :func:`unseen_identification`: the trial list's speakers (none of them training speakers)
  enrolled from the mean of k utterances, every other utterance identified: closed-set top-1 and
  top-5, and open-set accuracy with a third of the speakers left out as impostors, at the
  threshold that accepts 1 % of impostor queries (the same rule for every system, so it
  measures the scores, not a calibration) and, when given, at a system's own threshold.

Scoring functions take ``(queries (Q, D), references (S, D)) -> (Q, S)`` scores.

>>> rng = np.random.default_rng(0)
>>> centres = rng.normal(size=(6, 16))
>>> ids = [f"s{s}/x/{u}.wav" for s in range(6) for u in range(8)]
>>> emb = np.repeat(centres, 8, axis=0) + 0.3 * rng.normal(size=(48, 16))
>>> rows = unseen_identification(ids, emb, cosine_matrix, ks=(1, 3), draws=2)
>>> [(r["k"], r["top1"] > 0.9) for r in rows]
[(1, True), (3, True)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from wildvox.data.corpora.voxceleb import speakers_of_ids
from wildvox.metrics.verification import compute_eer, compute_min_dcf
from wildvox.scoring.cosine import length_normalize, speaker_means

MatrixScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
OwnDecision = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]

__all__ = ["cosine_matrix", "subset_metrics", "trial_subsets", "unseen_identification"]

SHORT, LONG = 2.0, 4.0  # seconds: both sides under SHORT, or both over LONG


def cosine_matrix(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Cosine scores (Q, S) of queries (Q, D) against references (S, D)."""
    return (length_normalize(queries) @ length_normalize(refs).T).astype(np.float64)


def trial_subsets(
    enroll: Sequence[str],
    test: Sequence[str],
    durations: Mapping[str, float],
    groups: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Boolean masks (T,) of the trials: ``all``, ``both < 2 s``, ``both > 4 s``, and
    ``source <g>`` for trials whose two speakers both belong to group ``g`` of ``groups``
    (speaker -> group)."""
    d_e = np.array([durations[u] for u in enroll])
    d_t = np.array([durations[u] for u in test])
    masks = {
        "all": np.ones(len(enroll), dtype=bool),
        f"both < {SHORT:g} s": (d_e < SHORT) & (d_t < SHORT),
        f"both > {LONG:g} s": (d_e > LONG) & (d_t > LONG),
    }
    if groups:
        g_e = np.array([groups.get(s, "?") for s in speakers_of_ids(enroll)])
        g_t = np.array([groups.get(s, "?") for s in speakers_of_ids(test)])
        for g in sorted(set(g_e.tolist()) | set(g_t.tolist())):
            masks[f"source {g}"] = (g_e == g) & (g_t == g)
    return masks


def subset_metrics(
    scores: np.ndarray, labels: np.ndarray, masks: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """EER, MinDCF(0.01) and trial counts of each subset that holds both classes."""
    out: dict[str, dict[str, float]] = {}
    y = np.asarray(labels)
    for name, m in masks.items():
        if m.sum() == 0 or y[m].min() == y[m].max():
            continue
        out[name] = {
            "eer": compute_eer(scores[m], y[m])[0],
            "min_dcf": compute_min_dcf(scores[m], y[m], p_target=0.01)[0],
            "trials": int(m.sum()),
        }
    return out


def unseen_identification(
    ids: Sequence[str],
    embeddings: np.ndarray,
    score: MatrixScorer,
    ks: Sequence[int] = (1, 3, 5),
    draws: int = 5,
    seed: int = 0,
    own_threshold: OwnDecision | None = None,
    durations: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Enrol every speaker of ``ids`` from k random utterances (mean of normalised
    embeddings), identify all their other utterances; repeat over ``draws`` draws.

    Args:
        ids: (N,) ``speaker/...`` utterance ids; embeddings: (N, D).
        score: the system's scoring of queries against enrolled speakers.
        ks: utterances per enrolment; speakers with fewer than k + 1 utterances are skipped.
        own_threshold: ``(best scores (Q,), enrolled seconds of the best candidate (Q,),
            query seconds (Q,), enrolled count) -> accept (Q,)``, the system's own open-set
            decision (e.g. the shipped calibration); open-set accuracy at it is added.
        durations: (N,) seconds of each utterance (needed with ``own_threshold``).

    Returns:
        One row per k: ``k``, ``speakers``, ``queries`` (per draw), closed-set ``top1`` and
        ``top5``, ``open_set_far1`` (accuracy at the threshold accepting 1 % of impostor
        queries, a third of the speakers held out as impostors) with ``impostors_accepted``,
        and ``open_set_own`` / ``own_impostors_accepted`` with ``own_threshold``; means over
        draws.
    """
    spk = speakers_of_ids(ids)
    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        acc: dict[str, list[float]] = {}
        speakers = sorted(s for s in set(spk.tolist()) if (spk == s).sum() > k)
        if len(speakers) < 3:
            continue
        for _ in range(draws):
            enrol_rows, query_rows = {}, []
            for s in speakers:
                own = rng.permutation(np.flatnonzero(spk == s))
                enrol_rows[s] = own[:k]
                query_rows += own[k:].tolist()
            names, refs = speaker_means(
                np.concatenate([embeddings[r] for r in enrol_rows.values()]),
                np.repeat(list(enrol_rows), [len(r) for r in enrol_rows.values()]),
            )
            q = np.array(query_rows)
            truth = np.searchsorted(names, spk[q])
            sims = score(embeddings[q], refs)
            order = np.argsort(-sims, axis=1)
            acc.setdefault("top1", []).append(float(np.mean(order[:, 0] == truth)))
            acc.setdefault("top5", []).append(
                float(np.mean((order[:, :5] == truth[:, None]).any(1)))
            )
            # open set: a third of the speakers are impostors, never enrolled
            out = rng.permutation(len(names))[: max(1, len(names) // 3)]
            enrolled = np.setdiff1d(np.arange(len(names)), out)
            sub = sims[:, enrolled]
            best, arg = sub.max(axis=1), enrolled[sub.argmax(axis=1)]
            known = np.isin(truth, enrolled)
            threshold = np.quantile(best[~known], 0.99)
            accept = best > threshold
            correct = np.where(known, accept & (arg == truth), ~accept)
            acc.setdefault("open_set_far1", []).append(float(correct.mean()))
            acc.setdefault("impostors_accepted", []).append(float(accept[~known].mean()))
            if own_threshold is not None:
                if durations is None:
                    raise ValueError("own_threshold needs the utterance durations")
                secs = np.array([durations[enrol_rows[n]].sum() for n in names])
                mine = own_threshold(best, secs[arg], durations[q], len(enrolled))
                correct = np.where(known, mine & (arg == truth), ~mine)
                acc.setdefault("open_set_own", []).append(float(correct.mean()))
                acc.setdefault("own_impostors_accepted", []).append(float(mine[~known].mean()))
        rows.append({"k": k, "speakers": len(speakers), "queries": len(query_rows), "draws": draws,
                     **{name: float(np.mean(v)) for name, v in acc.items()}})  # fmt: skip
    return rows
