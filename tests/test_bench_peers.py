"""The Resemblyzer peer script and the inference benchmark's helpers.

The list parsing and audio reading of ``bench/peers/resemblyzer_embed.py`` use only stdlib,
numpy, soundfile and soxr, so they are tested here in the wildvox venv; the end-to-end test runs
the script in ``.venv-peer`` and is skipped when that venv is absent (``make peer-env``).
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


embed_script = _load("resemblyzer_embed", REPO / "bench" / "peers" / "resemblyzer_embed.py")
inference = _load("bench_inference", REPO / "bench" / "inference.py")


# ---------------------------------------------------------------- resemblyzer_embed.py
def test_read_list_ids_paths_and_root(tmp_path: Path) -> None:
    listing = tmp_path / "files.txt"
    listing.write_text("# comment\n\nspk/a.opus\nb-id /abs/b.opus\n  c-id  rel/c.wav  \n")
    items = embed_script.read_list(listing, tmp_path / "root")
    assert items == [
        ("spk/a.opus", tmp_path / "root" / "spk/a.opus"),
        ("b-id", Path("/abs/b.opus")),
        ("c-id", tmp_path / "root" / "rel/c.wav"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [("a x.wav\na y.wav\n", "duplicate id 'a'"), ("a b c\n", "got 3 fields")],
)
def test_read_list_rejects_bad_lines(tmp_path: Path, text: str, message: str) -> None:
    listing = tmp_path / "files.txt"
    listing.write_text(text)
    with pytest.raises(ValueError, match=message):
        embed_script.read_list(listing, tmp_path)


def test_read_list_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        embed_script.read_list(tmp_path / "nope.txt", tmp_path)


def test_load_waveform_downmixes_and_resamples(tmp_path: Path) -> None:
    rate, seconds = 8000, 0.75
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, -left + 0.2], axis=1).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(path, stereo, rate)
    wave, duration = embed_script.load_waveform(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert wave.shape[0] == int(seconds * 16000)
    assert math.isclose(duration, seconds)
    # the channels average to a constant 0.1; soxr keeps it away from the edges
    assert np.allclose(wave[400:-400], 0.1, atol=2e-3)


def test_load_waveform_rejects_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0,), dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="no audio samples"):
        embed_script.load_waveform(path)


# ---------------------------------------------------------------- bench/inference.py
def test_pick_subset_is_fixed_sorted_and_unique() -> None:
    files = [f"s{i % 7}/u{i:03d}.opus" for i in range(50)] * 2
    a = inference.pick_subset(files, 10, seed=3)
    assert a == inference.pick_subset(list(reversed(files)), 10, seed=3)
    assert a == sorted(set(a)) and len(a) == 10 and set(a) <= set(files)
    assert a != inference.pick_subset(files, 10, seed=4)
    assert inference.pick_subset(files, 500, seed=0) == sorted(set(files))


def test_resolve_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pass --model"):
        inference.resolve_model(tmp_path / "missing")
    (tmp_path / "model.json").write_text("{}")
    assert inference.resolve_model(tmp_path) == tmp_path


def test_trial_metrics_hand_cases() -> None:
    ids = ["a1", "a2", "b1", "b2"]
    emb = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]])
    enroll, test = ["a1", "b1", "a1", "a2"], ["a2", "b2", "b1", "b2"]
    labels = np.array([1, 1, 0, 0])
    res = inference.trial_metrics(ids, emb, enroll, test, labels)
    assert res == {"eer": 0.0, "min_dcf": 0.0, "trials": 4}
    # swap the labels: every target scores below every non-target
    res = inference.trial_metrics(ids, emb, enroll, test, 1 - labels)
    assert res["eer"] == pytest.approx(1.0) and res["min_dcf"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="no embedding"):
        inference.trial_metrics(ids[:3], emb[:3], enroll, test, labels)


def _result(ours_rtf: float, rz_rtf: float, ours_eer: float, rz_eer: float) -> dict[str, Any]:
    def rec(rtf: float) -> dict[str, float]:
        return {"rtf_cpu": rtf, "rtf_wall": 2 * rtf}

    ours = {str(t): {"embed": rec(ours_rtf * t), "embed_batch": rec(ours_rtf / 2)} for t in (1, 2)}
    return {
        "model": {"path": "m", "id": "abc", "params": 1_500_000},
        "subset": {"files": 300, "audio_seconds": 480.0},
        "repeats": 3,
        "trials": 20000,
        "machine": {"cpus": 2, "load_average": {"start": 1.0, "end": 2.0}, "torch": "2.13.0"},
        "systems": {
            "ours": {"threads": ours, "accuracy": {"eer": ours_eer, "min_dcf": 0.5}},
            "resemblyzer": {
                "threads": {"1": rec(rz_rtf), "2": rec(3 * rz_rtf)},
                "accuracy": {"eer": rz_eer, "min_dcf": 0.886},
            },
        },
    }


def test_verdict_states_the_gap_either_way() -> None:
    better = inference.verdict(_result(0.005, 0.01, 0.10, 0.207))
    assert "2.00x as fast as" in better and "10.70 points lower (better)" in better
    assert "MinDCF0.01 -0.386" in better and "(cosine)" in better
    worse = inference.verdict(_result(0.04, 0.01, 0.30, 0.207))
    assert "4.00x slower than" in worse and "9.30 points higher (worse)" in worse
    # with cohorts: ours as shipped (AS-Norm) against the peer as shipped, the lent backend too
    normed = _result(0.005, 0.01, 0.30, 0.207)
    normed["systems"]["ours"]["accuracy_asnorm"] = {"eer": 0.19, "min_dcf": 0.8}
    normed["systems"]["resemblyzer"]["accuracy_asnorm"] = {"eer": 0.18, "min_dcf": 0.85}
    text = inference.verdict(normed)
    assert "(AS-Norm, as shipped) is 1.70 points lower (better)" in text
    assert "Resemblyzer reaches 18.00 % / 0.850" in text
    md = inference.render_markdown({**normed, "verdict": text})
    assert "| 30.00 | 0.500 | 19.00 | 0.800 |" in md and "| 20.70 | 0.886 | 18.00 | 0.850 |" in md


def test_render_markdown_table() -> None:
    result = _result(0.005, 0.01, 0.10, 0.207)
    result["verdict"] = inference.verdict(result)
    md = inference.render_markdown(result)
    rows = [line for line in md.splitlines() if line.startswith("| ours, per file")]
    assert rows[0].split("|")[2:7] == [" 0.0050 ", " 0.0100 ", " 0.50 ", " 10.00 ", " 0.500 "]
    assert "| Resemblyzer 0.1.4 (read + VAD + embed) | 0.0100 | 0.0300 | 1.00 | 20.70 |" in md
    assert result["verdict"] in md


def test_display_path_is_repo_relative(tmp_path: Path) -> None:
    assert inference.display_path(REPO / "src" / "wildvox") == "src/wildvox"
    assert inference.display_path(tmp_path) == str(tmp_path.resolve())


# ---------------------------------------------------------------- end to end, peer venv
@pytest.mark.slow
@pytest.mark.skipif(not PEER_PYTHON.is_file(), reason="peer venv absent (make peer-env)")
def test_resemblyzer_embeds_wildmix_files(wildmix: Path, tmp_path: Path) -> None:
    files = ["fsdd-george/digits/00001.opus", "fsdd-george/digits/00002.opus"]
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"{f}\n" for f in files) + "missing.opus\n")
    out = tmp_path / "emb.npz"
    cmd = [str(PEER_PYTHON), str(REPO / "bench/peers/resemblyzer_embed.py"), "--list"]
    cmd += [str(listing), "--out", str(out), "--root", str(wildmix / "wav"), "--no-warmup"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "FAILED missing.opus" in proc.stderr
    with np.load(out) as npz:
        assert list(npz["ids"]) == files
        emb = npz["embeddings"]
        assert emb.shape == (2, 256) and emb.dtype == np.float32
        assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
        # same speaker, two digits: similar but not identical
        assert 0.5 < float(emb[0] @ emb[1]) < 0.9999
        assert np.all(npz["seconds"] > 0)
        expected = [sf.info(str(wildmix / "wav" / f)).duration for f in files]
        assert np.allclose(npz["durations"], expected, atol=1e-3)
