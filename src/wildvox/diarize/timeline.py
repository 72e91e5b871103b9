"""A timeline PNG of a diarization: one row per speaker, a bar per turn (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from wildvox.data.files import atomic_path
from wildvox.diarize.rttm import Turn
from wildvox.registry import optional_import

__all__ = ["plot_timeline"]


def plot_timeline(
    path: str | os.PathLike[str],
    turns: Sequence[Turn],
    duration: float,
    reference: Sequence[Turn] | None = None,
    title: str = "",
) -> None:
    """Write a PNG timeline of ``turns`` (and of the ``reference`` turns above them, when
    given) over ``duration`` seconds to ``path`` (needs the ``plots`` extra)."""
    mpl = optional_import("matplotlib", "plots", "the diarization timeline")
    mpl.use("Agg")
    plt = optional_import("matplotlib.pyplot", "plots", "the diarization timeline")
    rows: list[tuple[str, list[Turn]]] = []
    for prefix, group in (("ref: ", reference or []), ("", turns)):
        for spk in sorted({t.speaker for t in group}):
            rows.append((prefix + spk, [t for t in group if t.speaker == spk]))
    fig, ax = plt.subplots(figsize=(12, 0.45 * max(len(rows), 1) + 1.2))
    colours = plt.get_cmap("tab10")
    for i, (_, group) in enumerate(rows):
        spans = [(t.start, t.end - t.start) for t in group]
        ax.broken_barh(spans, (i - 0.4, 0.8), color=colours(i % 10))
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, max(duration, 1e-3))
    ax.set_xlabel("time (s)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
