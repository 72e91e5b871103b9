"""Knowledge distillation: the relational loss, teacher-file alignment, and a training run that
follows a teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import tiny_config

from wildvox.audio.features import Fbank
from wildvox.audio.io import load_audio
from wildvox.config import CorpusConfig
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.training.distill import load_teacher, relational_distill_loss
from wildvox.training.trainer import Trainer


def test_relational_loss_is_two_times_one_minus_correlation() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(10, 6, generator=g)
    # invariant to scale and to the student's dimension (a rotation into a larger space)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    student = 4.0 * torch.cat([t, torch.zeros(10, 10)], 1) @ q
    assert float(relational_distill_loss(student, t)) < 1e-5
    # an unrelated student: about 2 (correlation ~ 0); anti-correlated profiles: up to 4
    other = torch.randn(10, 6, generator=g)
    assert 1.0 < float(relational_distill_loss(other, t)) < 3.0
    assert float(relational_distill_loss(t[:2], t[:2])) == 0.0  # too few items: no signal


def test_relational_loss_gives_gradients_that_reduce_it() -> None:
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(12, 8, generator=g)
    student = torch.randn(12, 5, generator=g, requires_grad=True)
    opt = torch.optim.SGD([student], lr=0.5)
    first = float(relational_distill_loss(student, teacher).detach())
    for _ in range(50):
        opt.zero_grad()
        relational_distill_loss(student, teacher).backward()
        opt.step()
    assert float(relational_distill_loss(student, teacher)) < 0.5 * first


def test_teacher_rows_follow_corpus_ids_and_paths(wildmix: Path, tmp_path: Path) -> None:
    utts = load_corpus(CorpusConfig(root=str(wildmix), list="dev_list.txt"))[:5]
    rng = np.random.default_rng(0)
    table = rng.normal(size=(3, 4)).astype(np.float32)
    ids = [f"{utts[0].corpus}/{utts[0].id}", str(utts[2].path.resolve()), "other/x.wav"]
    path = tmp_path / "teacher.npz"
    np.savez(path, ids=np.array(ids), embeddings=table)
    emb, known = load_teacher(path, utts)
    assert known.tolist() == [True, False, True, False, False]
    np.testing.assert_allclose(emb[0], table[0] / np.linalg.norm(table[0]), rtol=1e-6)
    np.testing.assert_allclose(emb[2], table[1] / np.linalg.norm(table[1]), rtol=1e-6)
    assert not emb[1].any()
    np.savez(path, ids=np.array(["other/x.wav"]), embeddings=table[:1])
    with pytest.raises(ValueError, match="none of the 5 training utterances"):
        load_teacher(path, utts)
    bad = table.copy()
    bad[0, 0] = np.nan
    np.savez(path, ids=np.array(ids), embeddings=bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_teacher(path, utts)
    path.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not a teacher embedding file"):
        load_teacher(path, utts)


def test_training_with_a_teacher_follows_its_similarity_structure(
    wildmix: Path, tmp_path: Path
) -> None:
    """The same run with and without the distillation loss: with it, the student's similarity
    profiles end closer to the teacher's. The teacher is a learnable function of the audio
    that is not the speaker label and survives mean normalisation: each utterance's
    per-band standard deviation of log-Mel energies."""
    cfg = tiny_config(wildmix, tmp_path)
    utts = load_corpus(cfg.dataset.train[0])
    waves = [load_audio(str(u.path)) for u in utts]
    fbank = Fbank(n_mels=40)
    teacher = np.stack([fbank(torch.from_numpy(w)[None])[0][0].std(0).numpy() for w in waves])
    path = tmp_path / "teacher.npz"
    np.savez(path, ids=np.array([f"{u.corpus}/{u.id}" for u in utts]), embeddings=teacher)
    crops = torch.stack([torch.from_numpy(np.resize(w, 8000)) for w in waves])

    def teacher_loss(weight: float) -> float:
        over = [f"train.distill_teacher={path}", f"train.distill_weight={weight}", "train.epochs=8"]
        trainer = Trainer(tiny_config(wildmix, tmp_path, over), tmp_path / str(weight), utts)
        trainer.fit()
        trainer.net.eval()
        with torch.no_grad():
            return float(relational_distill_loss(trainer.net(crops), torch.from_numpy(teacher)))

    assert teacher_loss(20.0) < teacher_loss(0.0) - 0.2
    with pytest.raises(ValueError, match=r"needs train\.distill_teacher"):
        Trainer(tiny_config(wildmix, tmp_path, ["train.distill_weight=1.0"]), tmp_path, utts)
