"""Knowledge distillation from a pretrained teacher's utterance embeddings.

The teacher (e.g. Resemblyzer, computed once by ``bench/peers/resemblyzer_embed.py`` in its
own environment) is never run during training: its embeddings of the training files are read
from an ``.npz`` with ``ids`` (N,) and ``embeddings`` (N, Dt). A training utterance matches the
row whose id is ``<corpus>/<id>`` (e.g. ``wildmix/spk/session/00001.opus``) or its absolute
path.

The loss is relational, so student and teacher dimensions and geometries need not agree (an
AAM-trained student spreads speakers over the sphere while a ReLU d-vector keeps every cosine
positive): for each crop ``i`` of the batch, the cosine similarities to the other crops are
standardised (zero mean, unit variance over ``j != i``) for student and teacher, and the loss
is the mean squared difference, i.e. ``2 * (1 - r_i)`` averaged over anchors, where ``r_i`` is
the Pearson correlation of the two similarity profiles. It teaches the student which unseen
speakers sound alike to the teacher, not the teacher's absolute scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wildvox.data.manifest import Utterance

logger = logging.getLogger(__name__)


def utterance_keys(u: Utterance) -> tuple[str, str]:
    """The ids under which a teacher file may list ``u``: ``<corpus>/<id>`` and its path."""
    return f"{u.corpus}/{u.id}", str(Path(u.path).resolve())


def load_teacher(path: Path, utterances: Sequence[Utterance]) -> tuple[np.ndarray, np.ndarray]:
    """Teacher embeddings aligned with ``utterances``.

    Returns:
        ``(embeddings (N, Dt) float32, L2-normalised; known (N,) bool)``; rows of utterances
        the teacher file lacks are zero and ``known`` is False there (no loss on them).

    Raises:
        ValueError: unreadable file, missing arrays, or no training utterance in it.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            ids = [str(i) for i in z["ids"]]
            table = np.asarray(z["embeddings"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(
            f"{path}: not a teacher embedding file with ids and embeddings ({exc})"
        ) from exc
    if table.ndim != 2 or len(ids) != len(table):
        raise ValueError(f"{path}: embeddings {table.shape} do not match {len(ids)} ids")
    if not np.isfinite(table).all():
        raise ValueError(f"{path}: embeddings contain NaN or infinite values")
    row = {key: i for i, key in enumerate(ids)}
    out = np.zeros((len(utterances), table.shape[1]), dtype=np.float32)
    known = np.zeros(len(utterances), dtype=bool)
    for n, u in enumerate(utterances):
        for key in utterance_keys(u):
            if key in row:
                out[n] = table[row[key]]
                known[n] = True
                break
    if not known.any():
        raise ValueError(
            f"{path}: none of the {len(utterances)} training utterances is in it "
            f"(ids look like {ids[:1]}; expected '<corpus>/<speaker>/<session>/<file>')"
        )
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    logger.info("teacher %s covers %d of %d training utterances", path, known.sum(), len(known))
    return out, known


def _standardised_similarities(x: Tensor) -> Tensor:
    """``(B, B)`` cosine similarities, each row standardised over its off-diagonal entries
    (the diagonal is set to 0)."""
    x = F.normalize(x.float(), dim=1)
    sim = x @ x.T
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    vals = sim[off].view(len(x), len(x) - 1)
    spread = vals.std(1, correction=0, keepdim=True).clamp_min(1e-6)
    vals = (vals - vals.mean(1, keepdim=True)) / spread
    out = torch.zeros_like(sim)
    out[off] = vals.reshape(-1)
    return out


def relational_distill_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over anchors of ``||z_s - z_t||^2 / (B - 1)`` between standardised similarity
    profiles (= ``2 * (1 - Pearson r)`` per anchor); 0 for batches of fewer than 3 items.

    >>> t = torch.randn(8, 5)
    >>> float(relational_distill_loss(t * 3.0, t)) < 1e-5
    True
    """
    if len(student) < 3:
        return student.new_zeros(())
    zs = _standardised_similarities(student)
    zt = _standardised_similarities(teacher)
    return ((zs - zt) ** 2).sum(1).mean() / (len(student) - 1)
