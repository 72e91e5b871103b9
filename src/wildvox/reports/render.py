"""Run reports: ``report.json`` (all figures) and ``report.md`` (the same as tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wildvox.data.files import atomic_write


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.2f} %"


def _num(x: Any, fmt: str = ".4f") -> str:
    return "n/a" if x is None else format(float(x), fmt)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """Markdown tables for a report dict as written by the demo."""
    out = [f"# wildvox run `{report.get('run', '?')}`", ""]
    if "command" in report:
        out += [f"Command: `{report['command']}`", ""]
    data = report.get("data", {})
    if data:
        out += ["## Data", ""]
        rows = [[k, str(v.get("speakers", "")), str(v.get("utterances", "")),
                 _num(v.get("hours"), ".2f")] for k, v in data.items()]  # fmt: skip
        out += _table(["set", "speakers", "utterances", "hours"], rows)
    ver = report.get("verification", {})
    if ver:
        out += [f"## Verification (`{report.get('trials', 'veri_test.txt')}`)", ""]
        rows = [
            [name, _pct(m.get("eer")), _num(m.get("min_dcf_0.01")), _num(m.get("min_dcf_0.05"))]
            for name, m in ver.items()
        ]
        out += _table(["system", "EER", "MinDCF (p=0.01)", "MinDCF (p=0.05)"], rows)
    iden = report.get("identification", {})
    if iden:
        out += ["## Identification (`iden_split.txt` test part)", ""]
        rows = [
            [name, str(m.get("utterances", "")), _pct(m.get("top1")), _pct(m.get("top5")),
             _pct(m.get("macro_f1")), _pct(m.get("chance_top1"))]
            for name, m in iden.items()
        ]  # fmt: skip
        out += _table(["system", "utterances", "Top-1", "Top-5", "macro-F1", "chance"], rows)
    train = report.get("training", {})
    if train:
        out += ["## Training", ""]
        out += _table(["item", "value"], [[k, str(v)] for k, v in train.items()])
        epochs = report.get("history", [])
        if epochs:
            rows = [
                [str(h["epoch"]), _num(h["loss"], ".3f"), _pct(h["accuracy"]),
                 _num(h["seconds"], ".0f"), _pct(h.get("val_top1"))]
                for h in epochs
            ]  # fmt: skip
            out += _table(["epoch", "loss", "train acc", "seconds", "val top-1"], rows)
    model = report.get("model", {})
    if model:
        out += ["## Model", ""]
        out += _table(["item", "value"], [[k, str(v)] for k, v in model.items()])
    return "\n".join(out)


def write_report(
    out_dir: Path, report: dict[str, Any], markdown: str | None = None
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` (``markdown``, default :func:`render_markdown`)
    into ``out_dir``, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "report.json", out_dir / "report.md")
    texts = (json.dumps(report, indent=2, default=str), markdown or render_markdown(report))
    for path, text in zip(paths, texts, strict=True):
        atomic_write(path, text)
    return paths


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render_sections(title: str, sections: dict[str, Any]) -> str:
    """Generic markdown: each section is a mapping of scalars (a 2-column table), a mapping of
    mappings (one row each) or a list of mappings (one row each)."""
    out = [f"# {title}", ""]
    for name, body in sections.items():
        out += [f"## {name}", ""]
        nested = isinstance(body, dict) and any(isinstance(v, list) for v in body.values())
        if nested:  # a section of sub-sections: render each one a level down
            sub = render_sections(name, body).split("\n")[2:]
            out += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
                    for line in sub]  # fmt: skip
        elif isinstance(body, list) and body and isinstance(body[0], dict):
            keys = list(body[0])
            out += _table(keys, [[_cell(row.get(k)) for k in keys] for row in body])
        elif isinstance(body, dict) and body and all(isinstance(v, dict) for v in body.values()):
            keys = list(dict.fromkeys(k for v in body.values() for k in v))
            rows = [[str(n)] + [_cell(v.get(k)) for k in keys] for n, v in body.items()]
            out += _table(["", *keys], rows)
        elif isinstance(body, dict):
            out += _table(["item", "value"], [[str(k), _cell(v)] for k, v in body.items()])
        else:
            out += [str(body), ""]
    return "\n".join(out)


def write_sections(out_dir: Path, title: str, report: dict[str, Any]) -> tuple[Path, Path]:
    """Like :func:`write_report` for :func:`render_sections` reports."""
    return write_report(out_dir, report, render_sections(title, report))
