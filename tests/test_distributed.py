"""Distributed data-parallel training on CPU (gloo): 2 processes == 1 process, same global batch.

Why this needs care. DDP averages gradients, so N processes with ``B / N`` samples each equal
one process with ``B`` samples only if every sample's forward pass is the same in both:

- BatchNorm normalises with the statistics of the batch it sees; per-process BN uses ``B / N``
  samples (other outputs, gradients and running statistics). ``train.sync_batchnorm`` replaces
  it by global-batch BN (``GlobalBatchNorm`` on CPU, where ``torch.nn.SyncBatchNorm`` does not
  run). The toy test shows plain BN breaking the equality and global BN restoring it.
- SpecAugment masks are drawn for the global batch and sliced per rank; the sub-center head's
  ``center_counts`` are summed over ranks.

What remains is float rounding: the ranks sum their halves separately (relative gradient
differences ~1e-6), which training amplifies over steps. The end-to-end test therefore uses SGD
with a small learning rate and the ``aam`` head. Adam would turn rounding noise in gradients
that are zero in exact arithmetic (the bias of the Linear layer before BatchNorm) into full
``lr``-sized steps, and ``sc_aam``'s max over sub-centers sends a sample's gradient to the
other sub-center when a near-tie flips under rounding, a discrete jump of ~lr * grad.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from wildvox.models.heads import build_head
from wildvox.training import distributed

# Heavier modules are imported inside the tests: the toy test's spawned workers import this
# module, and on a busy 2-core machine every import costs seconds.

SPEAKERS, UTTS, SECONDS, RATE = 6, 8, 0.8, 16000
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def write_corpus(root: Path) -> Path:
    """A synthetic VoxCeleb-layout corpus: 6 speakers, 8 utterances each.

    A speaker is a pitch range and a spectral tilt; each utterance has its own pitch contour,
    syllable-like amplitude envelope and noise level, so that features vary within a batch.
    """
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * RATE)) / RATE
    lines = []
    for s in range(SPEAKERS):
        for u in range(UTTS):
            f0 = (100.0 + 30.0 * s) * (1 + 0.1 * rng.standard_normal()) * (1 + 0.1 * t)
            phase = 2 * np.pi * np.cumsum(f0) / RATE
            tilt = 0.5 + 0.1 * s
            voice = sum(np.sin(k * phase) * tilt ** (k - 1) for k in range(1, 8))
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6))
            wav = 0.1 * voice * envelope + rng.uniform(0.005, 0.05) * rng.standard_normal(t.size)
            rel = f"spk{s}/sess/{u:05d}.wav"
            (root / "wav" / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav" / rel, wav.astype(np.float32), RATE)
            lines.append(f"spk{s} {rel}\n")
    (root / "train_list.txt").write_text("".join(lines))
    return root


def overrides(root: Path) -> list[str]:
    return [
        f"dataset.train=[{{root: {root}, list: train_list.txt}}]",
        "model.backbone_args={base_channels: 4, layers: [1, 1, 1, 1]}",
        "model.embed_dim=16",
        "features.n_mels=24",
        "head.name=aam",
        "dataset.crop_seconds=0.5",
        "dataset.num_workers=0",
        "dataset.sampler=hpm",
        "dataset.hpm_speakers=2",
        "dataset.hpm_utts=4",
        "augment.enabled=true",
        "augment.prob=1.0",
        "augment.speed=0",
        "augment.babble=0",
        "augment.reverb=0",
        "augment.specaugment=true",
        "train.optimizer=sgd",
        "train.lr=0.002",
        "train.epochs=2",
        "train.batch_size=8",
        "train.num_threads=1",
        "train.device=cpu",
    ]


def test_two_processes_equal_one_with_the_whole_batch(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from wildvox.config import load_config
    from wildvox.data.corpora.voxceleb import load_corpus
    from wildvox.training.trainer import Trainer

    root = write_corpus(tmp_path / "corpus")
    sets = [a for o in overrides(root) for a in ("--set", o)]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "wildvox.cli.main", "train", "--data", str(root), "--out", str(tmp_path / "ddp"),
        *sets,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert (tmp_path / "ddp" / "checkpoints" / "last.pt").is_file()

    cfg = load_config(None, overrides(root), data_root=str(root))
    Trainer(cfg, tmp_path / "single", load_corpus(cfg.dataset.train[0])).fit()
    single = load_file(str(tmp_path / "single" / "model" / "model.safetensors"))
    ddp = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    assert ddp.keys() == single.keys()
    for key in single:
        a, b = ddp[key].double(), single[key].double()
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (key, float((a - b).abs().max()))
    trained = single["net.embedder.backbone.conv1.weight"]
    assert not torch.equal(trained, torch.zeros_like(trained))


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 5, 8),
        nn.BatchNorm1d(8),
    )


def _toy_head() -> nn.Module:
    torch.manual_seed(1)
    return build_head("sc_aam", embed_dim=8, num_classes=3, margin=0.2, scale=10.0)


def _toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(8, 1, 6, 5, generator=gen), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


def _toy_step(
    model: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor, wrapped: nn.Module | None
) -> dict[str, np.ndarray]:
    """One forward/backward (through ``wrapped``, the DDP wrapper, when given); returns the
    gradients, BN running statistics and the head's counts."""
    loss = F.cross_entropy(head((wrapped or model)(x), y), y)
    loss.backward()
    out = {f"grad.{k}": p.grad for k, p in model.named_parameters() if p.grad is not None}
    out |= {f"buf.{k}": b for k, b in model.named_buffers() if b.is_floating_point()}
    out["counts"] = head.center_counts
    return {k: v.detach().numpy().copy() for k, v in out.items()}


def _spec() -> Any:
    from wildvox.augment.specaugment import SpecAugment

    return SpecAugment(num_time_masks=2, max_time_width=3, num_freq_masks=1, max_freq_width=2)


def _toy_worker(rank: int, init: str, queue: mp.Queue) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    ctx = distributed.DistContext.current()
    x, y = _toy_data()
    rows = slice(4 * rank, 4 * rank + 4)
    results: dict[str, Any] = {}
    for name, convert in (("global", True), ("plain", False)):
        model = _toy()
        if convert:
            model = distributed.convert_batchnorm(model, "cpu")
        ddp = distributed.wrap_model(model, ctx, torch.device("cpu"))
        head = _toy_head()
        before = head.center_counts.clone()
        results[name] = _toy_step(model, head, x[rows], y[rows], ddp)
        distributed.sync_increments(head.center_counts, before)
        results[name]["counts"] = head.center_counts.numpy().copy()
    spec = _spec()
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(8, 10, 6, generator=torch.Generator().manual_seed(6))
    results["spec"] = distributed.shard_spec_augment(spec, feats[rows], gen, ctx).numpy()
    queue.put((rank, results))
    torch.distributed.destroy_process_group()


def test_global_batchnorm_sharded_masks_and_counters() -> None:
    x, y = _toy_data()
    head = _toy_head()
    reference = _toy_step(_toy(), head, x, y, None)
    spec = _spec()
    feats = torch.randn(8, 10, 6, generator=torch.Generator().manual_seed(6))
    spec_ref = spec(feats, generator=torch.Generator().manual_seed(5)).numpy()

    context = mp.get_context("spawn")  # fork after threads can deadlock
    queue = context.Queue()
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        init = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    procs = [context.Process(target=_toy_worker, args=(r, init, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    for rank in (0, 1):
        glob = got[rank]["global"]
        for key, value in reference.items():  # gradients, running stats and counts agree
            assert np.allclose(glob[key], value, rtol=1e-5, atol=1e-6), (rank, key)
        plain = got[rank]["plain"]
        bn_grad = "grad.1.weight"  # per-rank statistics: a different gradient
        assert not np.allclose(plain[bn_grad], reference[bn_grad], rtol=1e-2, atol=1e-3)
        assert not np.allclose(plain["buf.1.running_var"], reference["buf.1.running_var"])
    assert reference["counts"].sum() == 8 and got[0]["global"]["counts"].sum() == 8
    np.testing.assert_array_equal(np.concatenate([got[0]["spec"], got[1]["spec"]]), spec_ref)


def test_init_from_env_without_torchrun_is_single_process() -> None:
    ctx = distributed.init_from_env("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    model = nn.BatchNorm1d(3)
    assert distributed.wrap_model(model, ctx, torch.device("cpu")) is model


def test_convert_batchnorm_keeps_state_dict_keys() -> None:
    model = _toy()
    keys = list(model.state_dict())
    converted = distributed.convert_batchnorm(model, "cpu")
    assert list(converted.state_dict()) == keys
    assert isinstance(converted[1], distributed.GlobalBatchNorm)
    x, _ = _toy_data()
    plain = _toy().eval()
    assert torch.allclose(converted.eval()(x), plain(x))  # single process / eval: plain BN
