"""Tiny end-to-end runs on a wildmix slice: train -> export -> embed -> score -> metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from e2e_helpers import tiny_config

from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.data.trials import read_trials
from wildvox.evaluation import evaluate_verification, score_trial_list
from wildvox.inference.model_io import load_exported
from wildvox.scoring.embeddings import load_embeddings
from wildvox.training.trainer import Trainer

TESTS = Path(__file__).resolve().parent


def test_train_embed_score(wildmix: Path, tmp_path: Path) -> None:
    cfg = tiny_config(wildmix, tmp_path)
    train = load_corpus(cfg.dataset.train[0])
    result = Trainer(cfg, tmp_path / "run", train, val=train[:8]).fit()
    assert len(result.history) == 2
    assert all(np.isfinite(h.loss) for h in result.history)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    model = load_exported(result.model_dir)
    assert len(model.speakers) == 6
    trials_path = tmp_path / "trials.txt"
    lines = (wildmix / "veri_test.txt").read_text().splitlines()[:40]
    trials_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "emb.npz"
    res = evaluate_verification(model, wildmix, str(trials_path), embeddings_out=out)
    emb = load_embeddings(out)
    assert emb.embeddings.shape == (len(read_trials(trials_path).utterances()), 32)
    assert np.allclose(res.scores, score_trial_list(emb, res.trials))
    assert 0.0 <= res.metrics["eer"] <= 1.0
    assert res.scores.min() >= -1.0 - 1e-5 and res.scores.max() <= 1.0 + 1e-5


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from e2e_helpers import tiny_config
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.training.trainer import Trainer
tmp = Path({tmp!r})
cfg = tiny_config(Path({wildmix!r}), tmp, {extra!r})
def kill(info):
    if info.step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
Trainer(cfg, tmp / "killed", load_corpus(cfg.dataset.train[0]), on_step=kill).fit()
"""


def test_resume_after_kill_gives_the_same_weights(wildmix: Path, tmp_path: Path) -> None:
    extra = ["train.epochs=3", "train.checkpoint_every_steps=2", "dataset.num_workers=1"]
    cfg = tiny_config(wildmix, tmp_path, extra)
    train = load_corpus(cfg.dataset.train[0])
    steps_per_epoch = len(train) // cfg.train.batch_size
    kill_at = steps_per_epoch + 3  # mid-way through the second epoch, after a step checkpoint
    script = KILLED_RUN.format(
        tests=str(TESTS), tmp=str(tmp_path), wildmix=str(wildmix), extra=extra, kill_at=kill_at
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (tmp_path / "killed" / "model").exists()

    resumed = Trainer(cfg, tmp_path / "killed", train)
    resumed.restore()
    assert resumed.step == kill_at - 1 and resumed.epoch == 1
    resumed.fit(resume=True)

    uninterrupted = Trainer(cfg, tmp_path / "straight", train)
    uninterrupted.fit()
    for mine, theirs in [(resumed.net, uninterrupted.net), (resumed.head, uninterrupted.head)]:
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
