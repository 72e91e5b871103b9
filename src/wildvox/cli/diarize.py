"""``wildvox diarize``: who spoke when in a recording, named after enrolled speakers.

Writes ``<stem>.rttm``, ``<stem>.json`` and ``<stem>.png`` (the timeline) into ``--out-dir``;
``--segments-only`` writes ``<stem>.segments.npz`` (per-window embeddings with their start and
end times) instead, the long-audio form of ``embed``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from wildvox.api import MAX_SECONDS, load_model
from wildvox.audio.io import AudioError
from wildvox.cli.common import console, fail, printable, shown
from wildvox.data.files import atomic_write
from wildvox.diarize.pipeline import NAMING_POINT
from wildvox.diarize.pipeline import diarize as run_diarization
from wildvox.diarize.rttm import write_rttm
from wildvox.diarize.segments import embed_segments
from wildvox.diarize.timeline import plot_timeline
from wildvox.inference.model_io import ModelFileError
from wildvox.store import StoreError

__all__ = ["diarize"]


def diarize(
    file: Path = typer.Argument(..., help="Recording (any length; decoded in blocks)."),
    num_speakers: int | None = typer.Option(
        None, "--num-speakers", "-n", help="Number of speakers, when known (else estimated)."
    ),
    store: Path | None = typer.Option(
        None, "--store", help="Speaker store naming the clusters (default: $WILDVOX_STORE)."
    ),
    operating_point: str = typer.Option(
        NAMING_POINT,
        "--operating-point",
        "-p",
        help="Identification point naming clusters: far=1% (open-set rate), far=X%, eer, ...",
    ),
    no_names: bool = typer.Option(
        False, "--no-names", help="Do not match clusters to the store: all unknown-N."
    ),
    out_dir: Path = typer.Option(Path(), "--out-dir", "-o", help="Folder for the outputs."),
    segments_only: bool = typer.Option(
        False, "--segments-only", help="Only per-window embeddings -> <stem>.segments.npz."
    ),
    window: float = typer.Option(3.0, "--window", help="Embedding window, seconds."),
    hop: float = typer.Option(1.5, "--hop", help="Window step, seconds."),
    model: Path | None = typer.Option(None, "--model", help="Exported model folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON result."),
    max_seconds: float = typer.Option(
        MAX_SECONDS, "--max-seconds", help="Longest recording accepted, in seconds."
    ),
) -> None:
    """Who spoke when: VAD, 3 s window embeddings, clustering, re-segmentation, then each
    cluster named after an enrolled speaker (identification operating point) or unknown-N.
    Writes RTTM, JSON and a timeline PNG. Overlapping speech gets one speaker per instant."""
    if num_speakers is not None and num_speakers < 1:
        fail(f"--num-speakers must be >= 1, got {num_speakers}")
    if not max_seconds > 0:
        fail(f"--max-seconds must be > 0, got {max_seconds}")
    try:
        m = load_model(model, store=store)
    except (ModelFileError, ValueError) as exc:
        fail(printable(exc))
    m.max_seconds = max_seconds
    stem = file.stem
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if segments_only:
            segs = embed_segments(m, file, window, hop)
            target = out_dir / f"{stem}.segments.npz"
            segs.save(target)
            console.print(Text.assemble(f"{len(segs)} windows of {window:g} s -> ", shown(target)))
            return
        result = run_diarization(m, file, num_speakers, None if no_names else operating_point,
                                 window=window, hop=hop)  # fmt: skip
        payload = {"file": str(file), **result.to_json()}
        write_rttm(out_dir / f"{stem}.rttm", result.turns, stem)
        atomic_write(out_dir / f"{stem}.json", json.dumps(payload, indent=2) + "\n")
        plot_timeline(out_dir / f"{stem}.png", result.turns, result.duration, title=stem)
    except (AudioError, ValueError, StoreError, ImportError, OSError) as exc:
        fail(printable(exc))
    finally:
        m.close()
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table("speaker", "speech (s)", "closest enrolled", "LLR")
    for s in result.speakers:
        table.add_row(shown(s.label), f"{s.speech:.1f}", shown(s.best or "-"),
                      "-" if s.llr is None else f"{s.llr:.2f}")  # fmt: skip
    console.print(table)
    console.print(Text.assemble("wrote ", shown(out_dir / f"{stem}.rttm"), ", .json, .png"))
