"""Evaluation of a model on a VoxCeleb-layout corpus: verification trials and identification.

Each step is a function on files and arrays, so the CLI can run them one at a time
(embed -> score -> evaluate) or all at once (demo).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wildvox.audio.io import load_audio
from wildvox.data.corpora.voxceleb import audio_root, load_iden_split
from wildvox.data.trials import Trials, read_trials
from wildvox.inference.extract import extract_embeddings
from wildvox.inference.model_io import ExportedModel
from wildvox.metrics.identification import identification_report
from wildvox.metrics.verification import verification_report
from wildvox.models.heads import build_head
from wildvox.models.speaker_net import build_features
from wildvox.scoring.cosine import score_trials
from wildvox.scoring.embeddings import EmbeddingSet, save_embeddings

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class VerificationResult:
    trials: Trials
    scores: np.ndarray
    metrics: dict[str, float]


def embed_ids(
    model: ExportedModel,
    root: Path,
    ids: Sequence[str],
    *,
    num_workers: int = 1,
    progress: Progress | None = None,
) -> EmbeddingSet:
    """Embed utterances named by their ids (paths relative to ``root/wav``)."""
    cfg = model.config
    wav = audio_root(root)
    ext = extract_embeddings(
        model.net,
        [str(wav / i) for i in ids],
        cfg,
        num_workers=num_workers,
        device=next(model.net.parameters()).device,
        progress=progress,
    )
    return EmbeddingSet(
        ids=[ids[i] for i in ext.ok], embeddings=ext.embeddings, durations=ext.durations
    )


def score_trial_list(emb: EmbeddingSet, trials: Trials) -> np.ndarray:
    """Cosine scores of every trial, (N,)."""
    return score_trials(emb, trials.enroll, trials.test)


def evaluate_verification(
    model: ExportedModel,
    root: Path,
    trials_name: str = "veri_test.txt",
    *,
    embeddings_out: Path | None = None,
    num_workers: int = 1,
    progress: Progress | None = None,
) -> VerificationResult:
    """EER and MinDCF of cosine scoring on a trial list of the corpus at ``root``."""
    trials = read_trials(root / trials_name)
    emb = embed_ids(model, root, trials.utterances(), num_workers=num_workers, progress=progress)
    if embeddings_out is not None:
        save_embeddings(embeddings_out, emb.ids, emb.embeddings, emb.durations)
    scores = score_trial_list(emb, trials)
    return VerificationResult(trials, scores, verification_report(scores, trials.labels))


def evaluate_identification(
    model: ExportedModel,
    root: Path,
    split_name: str = "iden_split.txt",
    *,
    num_workers: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Closed-set identification of the split-3 utterances by the model's classifier head.

    Only speakers the model was trained on can be identified; the scores are the head's
    cosine similarities to each class prototype (margin off).
    """
    known = {s: i for i, s in enumerate(model.speakers)}
    test = [u for u in load_iden_split(root, split_name) if u.split == 3 and u.speaker in known]
    if not test or not model.head_state:
        return {"utterances": 0}
    cfg = model.config
    head = build_head(
        cfg.head.name,
        embed_dim=cfg.model.embed_dim,
        num_classes=len(model.speakers),
        margin=cfg.head.margin,
        scale=cfg.head.scale,
        args=cfg.head.args,
    )
    head.load_state_dict(model.head_state)
    head.eval()
    emb = embed_ids(model, root, [u.id for u in test], num_workers=num_workers, progress=progress)
    with torch.inference_mode():
        scores = head(torch.from_numpy(emb.embeddings)).numpy()
    by_id = {u.id: u for u in test}
    labels = np.array([known[by_id[i].speaker] for i in emb.ids])
    report: dict[str, Any] = identification_report(scores, labels)
    report["utterances"] = len(labels)
    report["speakers"] = len(set(labels.tolist()))
    report["chance_top1"] = 1.0 / len(model.speakers)
    return report


def mean_fbank_baseline(root: Path, trials: Trials, n_mels: int = 80) -> dict[str, float]:
    """The simple baseline: cosine between utterance-mean log-Mel vectors (no CMN)."""
    from wildvox.config import Config, FeatureConfig

    feats = build_features(Config(features=FeatureConfig(n_mels=n_mels, cmn=False)))
    wav = audio_root(root)
    ids = trials.utterances()
    vecs = np.zeros((len(ids), n_mels), dtype=np.float32)
    with torch.inference_mode():
        for i, uid in enumerate(ids):
            x = torch.from_numpy(load_audio(wav / uid)).unsqueeze(0)
            f, _ = feats(x)
            vecs[i] = f[0].mean(0).numpy()
    emb = EmbeddingSet(ids=ids, embeddings=vecs, durations=None)
    return verification_report(score_trial_list(emb, trials), trials.labels)
