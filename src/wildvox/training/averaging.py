"""Epoch checkpoints, weight averaging, and reading weights to start a training stage from.

The trainer writes ``checkpoints/epoch_NNNN.pt`` after every epoch when
``train.keep_epoch_checkpoints`` (or ``train.average_last``) is set and keeps only the newest
ones. :func:`export_average` averages the network and head weights of the last N of them into
an exported model (WeSpeaker's ``average_model``): floating-point tensors are averaged (in
float64, cast back), integer ones such as BatchNorm's ``num_batches_tracked`` are taken from the
newest checkpoint.

:func:`read_weights` reads ``(net, head, speakers)`` from a checkpoint or an exported model
folder, for ``train.init_from`` (large-margin fine-tuning starts from stage 1's weights).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from wildvox.config import from_dict
from wildvox.data.files import atomic_path
from wildvox.inference.model_io import export_model, load_exported
from wildvox.models.speaker_net import build_speaker_net
from wildvox.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")

StateDict = dict[str, torch.Tensor]


def epoch_checkpoint_path(ckpt_dir: Path, epoch: int) -> Path:
    """``ckpt_dir/epoch_NNNN.pt`` for ``epoch`` (1-based: the number of epochs done)."""
    return Path(ckpt_dir) / f"epoch_{epoch:04d}.pt"


def list_epoch_checkpoints(ckpt_dir: Path) -> list[Path]:
    """The epoch checkpoints in ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _EPOCH_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_epoch_checkpoints(ckpt_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` epoch checkpoints; returns the deleted paths."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    paths = list_epoch_checkpoints(ckpt_dir)
    doomed = paths[: max(0, len(paths) - keep)]
    for path in doomed:
        path.unlink()
    return doomed


def save_epoch_checkpoint(
    last_path: Path, epoch: int, state: Mapping[str, object], keep: int
) -> None:
    """Write the end-of-epoch ``state`` to ``last_path`` and, with ``keep > 0``, to
    ``epoch_NNNN.pt`` beside it, deleting all but the newest ``keep`` epoch checkpoints.

    The epoch file is written first: a process killed in between only repeats the epoch.
    """
    if keep <= 0:
        save_checkpoint(last_path, dict(state))
        return
    path = epoch_checkpoint_path(last_path.parent, epoch)
    save_checkpoint(path, dict(state))
    prune_epoch_checkpoints(last_path.parent, keep)
    with atomic_path(last_path) as tmp:
        shutil.copyfile(path, tmp)


def average_states(states: Sequence[Mapping[str, torch.Tensor]]) -> StateDict:
    """Element-wise mean of state dicts with equal keys and shapes.

    Floating-point tensors are averaged in float64 and cast back to their dtype; other tensors
    (step counters) are taken from the last state.

    >>> a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    >>> b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    >>> avg = average_states([a, b])
    >>> avg["w"].tolist(), int(avg["n"])
    ([2.0, 4.0], 5)
    """
    if not states:
        raise ValueError("nothing to average: no state dicts given")
    keys = list(states[0])
    for i, state in enumerate(states[1:], 1):
        if list(state) != keys:
            missing = sorted(set(keys) ^ set(state))
            raise ValueError(f"state {i} has different keys from state 0: {missing[:5]}")
    out: StateDict = {}
    for key in keys:
        tensors = [s[key] for s in states]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            raise ValueError(f"{key}: shapes differ between states: {sorted(shapes)}")
        last = tensors[-1]
        if last.is_floating_point():
            total = torch.stack([t.detach().to(torch.float64) for t in tensors]).mean(0)
            out[key] = total.to(last.dtype)
        else:
            out[key] = last.detach().clone()
    return out


@dataclass
class Weights:
    """Network and head weights with the speaker labels of the head's classes."""

    net: StateDict
    head: StateDict
    speakers: list[str]


def read_weights(path: str | Path) -> Weights:
    """Weights of a training checkpoint (``.pt`` file) or an exported model folder.

    Raises:
        CheckpointError: the checkpoint is missing or unreadable.
        wildvox.inference.model_io.ModelFileError: the model folder is.
    """
    path = Path(path)
    if path.is_dir():
        model = load_exported(path)
        return Weights(model.net.state_dict(), dict(model.head_state), list(model.speakers))
    state = load_checkpoint(path)
    try:
        return Weights(dict(state["net"]), dict(state["head"]), list(state["speakers"]))
    except KeyError as exc:
        raise CheckpointError(f"{path}: not a wildvox training checkpoint (no {exc})") from exc


def average_checkpoints(paths: Sequence[Path]) -> tuple[Weights, str]:
    """Average the weights of ``paths`` (training checkpoints of one run).

    Returns the averaged weights and the config (YAML text) of the newest checkpoint.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    states = [load_checkpoint(Path(p)) for p in paths]
    speakers = [list(s["speakers"]) for s in states]
    if any(s != speakers[-1] for s in speakers):
        raise ValueError("the checkpoints have different speaker maps; they are not one run")
    weights = Weights(
        average_states([s["net"] for s in states]),
        average_states([s["head"] for s in states]),
        speakers[-1],
    )
    return weights, str(states[-1]["config"])


def export_average(
    ckpt_dir: Path, last: int, out_dir: Path, extra: Mapping[str, object] | None = None
) -> str:
    """Export the average of the newest ``last`` epoch checkpoints in ``ckpt_dir``.

    Returns the model id. Raises ValueError when fewer than ``last`` epoch checkpoints exist.
    """
    paths = list_epoch_checkpoints(ckpt_dir)
    if last < 1 or len(paths) < last:
        raise ValueError(
            f"{ckpt_dir}: cannot average the last {last} epochs, {len(paths)} epoch checkpoints"
            " exist (set train.keep_epoch_checkpoints >= train.average_last)"
        )
    chosen = paths[-last:]
    weights, config_text = average_checkpoints(chosen)
    cfg = from_dict(yaml.safe_load(config_text))
    net = build_speaker_net(cfg)
    net.load_state_dict(weights.net)
    logger.info("averaged %s", ", ".join(p.name for p in chosen))
    info = {"averaged": [p.name for p in chosen], **(extra or {})}
    return export_model(out_dir, net, cfg, weights.speakers, head_state=weights.head, extra=info)
