"""Batch ``wildvox verify --pairs`` and ``wildvox identify FILES|--list``: one process, one
model load, each file embedded once; one result per line on stdout (a table row or a JSON
object), progress on stderr, a summary at the end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.text import Text

from wildvox.api import WINDOW_SECONDS, SpeakerModel
from wildvox.audio.io import AudioError
from wildvox.cli.common import clean, fail, listed_path, out, printable, progress_bar, shown
from wildvox.inference.answers import Embedded
from wildvox.inference.model_io import ModelFileError
from wildvox.store import StoreError

Embedder = Callable[[Path], Embedded]
_ERRORS = (AudioError, ValueError, ModelFileError, StoreError, OSError)


def _line(row: dict[str, Any], jsonl: bool, text: Text) -> None:
    if jsonl:
        typer.echo(json.dumps(clean(row), ensure_ascii=False))
    else:
        out.print(text)


def _cached(m: SpeakerModel, window_seconds: float = 0.0) -> Callable[[Path], Embedded | str]:
    """``embed(path)``: the file's :class:`Embedded`, or the reason it failed; each path is
    read and embedded once."""
    done: dict[Path, Embedded | str] = {}

    def embed(path: Path) -> Embedded | str:
        if path not in done:
            try:
                done[path] = m.analyse(path, window_seconds=window_seconds)
            except _ERRORS as exc:
                done[path] = printable(exc)
        return done[path]

    return embed


def verify_pairs(
    m: SpeakerModel, pairs: Path, operating_point: str, as_json: bool, jsonl: bool
) -> int:
    """Verify every pair of ``pairs`` (``A B`` lines or a labelled trial list); returns the
    exit status (0: every pair decided, 2: some failed)."""
    from wildvox.data.trials import TrialError, read_trials

    try:
        trials = read_trials(pairs)
        threshold = m.decision_threshold(operating_point)  # validates the point before any work
    except (TrialError, ValueError) as exc:
        fail(printable(exc))
    paths = {e: listed_path(e, pairs) for e in trials.utterances()}
    embed = _cached(m)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    as_json_lines = jsonl or as_json
    if not as_json_lines:
        out.print(f"{'decision':8} {'score':>8} {'LLR':>8}  a  b", highlight=False)
    with progress_bar("verifying", len(trials)) as advance:
        for i, (a, b) in enumerate(zip(trials.enroll, trials.test, strict=True)):
            ea, eb = embed(paths[a]), embed(paths[b])
            row: dict[str, Any] = {"a": a, "b": b}
            if trials.labeled:
                row["label"] = int(trials.labels[i])
            if isinstance(ea, str) or isinstance(eb, str):
                row["error"] = ea if isinstance(ea, str) else eb
                text = Text.assemble(("error   ", "red"), " ", shown(row["error"]))
            else:
                v = m.decide(ea, eb, operating_point)
                row.update(asdict(v))
                llr = "-" if v.llr is None else f"{v.llr:8.2f}"
                text = Text.assemble(
                    ("accept  " if v.accept else "reject  ", "green" if v.accept else "red"),
                    f" {v.score:8.4f} {llr:>8}  ", shown(a), " ", shown(b),
                )  # fmt: skip
            rows.append(row)
            if not as_json:
                _line(row, jsonl, text)
            advance(1)
    summary = _pairs_summary(m, rows, threshold, operating_point, time.perf_counter() - started)
    if as_json:
        typer.echo(json.dumps(clean({"pairs": rows, "summary": summary}), indent=2,
                              ensure_ascii=False))  # fmt: skip
    elif jsonl:
        typer.echo(json.dumps(clean({"summary": summary})))
    else:
        out.print(_summary_text(summary), highlight=False)
    return 2 if summary["errors"] else 0


def _pairs_summary(
    m: SpeakerModel, rows: list[dict[str, Any]], threshold: float, point: str, seconds: float
) -> dict[str, Any]:
    from wildvox.metrics.verification import verification_report

    done = [r for r in rows if "error" not in r]
    summary: dict[str, Any] = {
        "pairs": len(rows), "decided": len(done), "errors": len(rows) - len(done),
        "accepted": sum(r["accept"] for r in done), "operating_point": point,
        "threshold": threshold, "calibrated": m.calibrated, "seconds": seconds,
    }  # fmt: skip
    labelled = [r for r in done if "label" in r]
    if labelled:
        y = np.array([r["label"] for r in labelled])
        acc = np.array([r["accept"] for r in labelled])
        key = "llr" if m.calibrated else "score"
        values = np.array([r[key] for r in labelled], dtype=np.float64)
        summary["false_accepts"] = int((acc & (y == 0)).sum())
        summary["false_rejects"] = int((~acc & (y == 1)).sum())
        summary["false_accept_rate"] = float(summary["false_accepts"] / max(1, (y == 0).sum()))
        summary["false_reject_rate"] = float(summary["false_rejects"] / max(1, (y == 1).sum()))
        if 0 < y.sum() < len(y):
            summary.update(verification_report(values, y))
    return summary


def _summary_text(summary: dict[str, Any]) -> str:
    parts = [f"{summary['decided']}/{summary['pairs']} pairs decided in "
             f"{summary['seconds']:.1f} s, {summary['accepted']} accepted"]  # fmt: skip
    if summary["errors"]:
        parts.append(f"{summary['errors']} failed")
    if "false_accepts" in summary:
        parts.append(
            f"false accepts {summary['false_accepts']} ({100 * summary['false_accept_rate']:.1f} "
            f"%), false rejects {summary['false_rejects']} "
            f"({100 * summary['false_reject_rate']:.1f} %) at {summary['operating_point']}"
        )
    if "eer" in summary:
        parts.append(f"EER {100 * summary['eer']:.2f} %, MinDCF(0.01) "
                     f"{summary['min_dcf_0.01']:.3f}, MinDCF(0.05) "
                     f"{summary['min_dcf_0.05']:.3f}")  # fmt: skip
    return "; ".join(parts)


def identify_many(
    m: SpeakerModel, files: Sequence[Path], top_k: int, point: str, as_json: bool, jsonl: bool
) -> int:
    """Identify every file; returns the exit status (0: all named, 1: some unknown, 2: some
    failed)."""
    try:
        m.decision_threshold(point)
        if len(m.store()) == 0:
            fail(f"{m.store().path}: no enrolled speakers; enroll some first (`wildvox enroll`)")
    except (ValueError, StoreError) as exc:
        fail(printable(exc))
    embed = _cached(m, WINDOW_SECONDS)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if not (as_json or jsonl):
        out.print(f"{'speaker':24} {'LLR':>7}  file", highlight=False)
    with progress_bar("identifying", len(files)) as advance:
        for path in files:
            e = embed(path)
            row: dict[str, Any] = {"file": str(path)}
            if isinstance(e, str):
                row["error"] = e
                text = Text.assemble(("error", "red"), " ", shown(e))
            else:
                try:
                    row.update(asdict(m.identify_embedded(e, top_k, point)))
                except _ERRORS as exc:
                    row["error"] = printable(exc)
            if "error" not in row:
                best = row["candidates"][0] if row["candidates"] else {}
                value = best.get("llr") if m.calibrated else best.get("score")
                name = row["speaker"] or ("several" if row["multiple_speakers"] else "unknown")
                shown_value = "-" if value is None else f"{value:7.2f}"
                text = Text.assemble(shown(f"{printable(name):24}"), f" {shown_value:>7}  ",
                                     shown(path))  # fmt: skip
            rows.append(row)
            if not as_json:
                _line(row, jsonl, text)
            advance(1)
    named = sum(1 for r in rows if r.get("speaker"))
    errors = sum(1 for r in rows if "error" in r)
    summary = {"files": len(rows), "named": named, "unknown": len(rows) - named - errors,
               "errors": errors, "operating_point": point, "calibrated": m.calibrated,
               "seconds": time.perf_counter() - started}  # fmt: skip
    if as_json:
        typer.echo(json.dumps(clean({"results": rows, "summary": summary}), indent=2,
                              ensure_ascii=False))  # fmt: skip
    elif jsonl:
        typer.echo(json.dumps(clean({"summary": summary})))
    else:
        out.print(f"{named}/{len(rows)} named, {summary['unknown']} unknown, {errors} failed, "
                  f"in {summary['seconds']:.1f} s", highlight=False)  # fmt: skip
    return 2 if errors else (1 if summary["unknown"] else 0)
