"""Store hardening (issues #12.8, #12.9, #11.1): no silent re-initialisation, race-free creation,
clear errors for hostile files and arguments, one pooling shared with scoring."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from wildvox.cli.main import app
from wildvox.scoring.cosine import enroll_mean, speaker_means
from wildvox.store import ExactIndex, SpeakerStore, StoreError, check_top_k

DIM = 8
MODEL = "test-model"
runner = CliRunner()


def rows(seed: int, k: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((k, DIM)).astype(np.float32)


def make_store(path: Path, names: list[str]) -> None:
    with SpeakerStore(path, MODEL, DIM) as st:
        for i, name in enumerate(names):
            st.enroll(name, rows(i, 2), [1.0, 2.0], ["a.wav", "b.wav"])


# ----------------------------------------------------------------------------- #12.9
def test_zero_byte_store_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"
    path.touch()
    with pytest.raises(StoreError, match=r"empty \(0-byte\) file.*backup") as info:
        SpeakerStore(path, MODEL, DIM)
    assert info.value.path == path
    assert path.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["spk.db"]


@pytest.mark.parametrize("with_speakers", [True, False])
def test_emptied_meta_table_is_refused_not_restamped(tmp_path: Path, with_speakers: bool) -> None:
    path = tmp_path / "spk.db"
    make_store(path, ["ann", "bob"] if with_speakers else [])
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM meta")
    raw.close()
    before = path.read_bytes()
    match = "2 speakers, utterances of model 'test-model'" if with_speakers else "0 speakers"
    with pytest.raises(StoreError, match=f"meta table has lost model_id.*{match}.*backup"):
        SpeakerStore(path, "another-model", DIM)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0
    raw.close()
    assert path.read_bytes() == before


def test_dangling_symlink_is_refused_quickly(tmp_path: Path) -> None:
    link = tmp_path / "spk.db"
    link.symlink_to(tmp_path / "gone" / "spk.db")
    start = time.monotonic()
    with pytest.raises(StoreError, match="symbolic link to a missing file"):
        SpeakerStore(link, MODEL, DIM)
    assert time.monotonic() - start < 5 and link.is_symlink() and not (tmp_path / "gone").exists()


def test_new_store_is_made_whole_without_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "spk.db"
    with SpeakerStore(path, MODEL, DIM):
        pass
    assert sorted(p.name for p in path.parent.iterdir()) == ["spk.db"]
    with sqlite3.connect(path) as raw:
        meta = dict(raw.execute("SELECT key, value FROM meta").fetchall())
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    assert meta == {"model_id": MODEL, "embed_dim": DIM, "generation": 0}


def _create_and_enrol(
    path_pattern: str, who: int, trials: int, barrier: object, errors: object
) -> None:
    for trial in range(trials):
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        try:
            with SpeakerStore(path_pattern.format(trial), MODEL, DIM, busy_timeout_s=20) as st:
                st.enroll(f"p{who}", rows(who), [1.0], [f"{who}.wav"])
        except Exception as err:  # reported to the parent, which fails the test
            errors.put((trial, who, repr(err)))  # type: ignore[attr-defined]


def test_six_processes_creating_one_store_all_land(tmp_path: Path) -> None:
    procs, trials = 6, 25  # 150 creations; the old code lost ~1 in 60
    ctx = mp.get_context("fork")  # no re-import of this module (and torch) in each child
    barrier, errors = ctx.Barrier(procs), ctx.Queue()
    pattern = str(tmp_path / "trial{}.db")
    workers = [
        ctx.Process(target=_create_and_enrol, args=(pattern, who, trials, barrier, errors))
        for who in range(procs)
    ]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=max(1.0, 180 - (time.monotonic() - start)))
    alive = [w for w in workers if w.is_alive()]
    for w in alive:
        w.kill()
    assert not alive, "a process hung creating the store"
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, failures
    assert all(w.exitcode == 0 for w in workers)
    for trial in range(trials):
        with SpeakerStore(pattern.format(trial), MODEL, DIM) as st:
            assert sorted(r.name for r in st.list_speakers()) == [f"p{i}" for i in range(procs)]
    assert not list(tmp_path.glob(".*.new")), "temporary store files left behind"


# ----------------------------------------------------------------------------- #12.8
def test_deeply_nested_json_import_names_the_file_and_line(tmp_path: Path) -> None:
    make_store(tmp_path / "src.db", ["ann"])
    with SpeakerStore(tmp_path / "src.db", MODEL, DIM) as src:
        src.export(tmp_path / "ok.jsonl")
    header = (tmp_path / "ok.jsonl").read_text().splitlines()[0]
    deep = "[" * 200_000 + "]" * 200_000
    bomb = tmp_path / "bomb.jsonl"
    bomb.write_text(f"{header}\n{deep}\n")
    with SpeakerStore(tmp_path / "dst.db", MODEL, DIM) as dst:
        with pytest.raises(StoreError, match="line 2: JSON nested too deeply") as info:
            dst.import_(bomb)
        assert info.value.path == bomb
        bomb.write_text(f"{deep}\n")
        with pytest.raises(StoreError, match="bad or missing header line"):
            dst.import_(bomb)
        assert len(dst) == 0


def test_import_refuses_non_finite_times(tmp_path: Path) -> None:
    make_store(tmp_path / "src.db", ["ann"])
    out = tmp_path / "x.jsonl"
    with SpeakerStore(tmp_path / "src.db", MODEL, DIM) as src:
        src.export(out)
    header, line = out.read_text().splitlines()
    speaker = json.loads(line)
    speaker["created"] = float("nan")
    out.write_text(f"{header}\n{json.dumps(speaker)}\n")
    message = "line 2: field 'created' is not a finite number"
    with (
        SpeakerStore(tmp_path / "dst.db", MODEL, DIM) as dst,
        pytest.raises(StoreError, match=message),
    ):
        dst.import_(out)


def test_store_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    for path in (blocker / "spk.db", blocker / "sub" / "spk.db"):
        with pytest.raises(StoreError, match=r"file\.txt is a file, not a folder") as info:
            SpeakerStore(path, MODEL, DIM)
        assert info.value.path == path
    assert blocker.read_text() == "not a folder"


def test_export_to_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    make_store(tmp_path / "spk.db", ["ann"])
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with SpeakerStore(tmp_path / "spk.db", MODEL, DIM) as st:
        with pytest.raises(StoreError, match="cannot write export file") as info:
            st.export(blocker / "out.jsonl")
        assert info.value.path == blocker / "out.jsonl"
        with pytest.raises(StoreError, match="cannot write export file"):
            st.export(tmp_path)  # a folder: the final rename fails
    assert blocker.read_text() == "x"
    assert not [p.name for p in tmp_path.parent.iterdir() if p.name.startswith(f".{tmp_path.name}")]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", None])
def test_top_k_must_be_a_positive_integer(tmp_path: Path, bad: object) -> None:
    make_store(tmp_path / "spk.db", ["ann", "bob", "cy"])
    with SpeakerStore(tmp_path / "spk.db", MODEL, DIM) as st:
        with pytest.raises(ValueError, match=r"top_k must be an integer >= 1, got"):
            st.identify(rows(5)[0], top_k=bad)  # type: ignore[arg-type]
        assert len(st.identify(rows(5)[0], top_k=1)) == 1
        assert len(st.identify(rows(5)[0], top_k=np.int64(10))) == 3
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        ExactIndex(DIM).search(rows(0), bad)  # type: ignore[arg-type]
    assert check_top_k(np.int32(4)) == 4


def test_cli_store_errors_are_one_line_with_status_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    cases = [
        (["speakers", "list", "--store", str(blocker / "s.sqlite")], "is a file, not a folder"),
        (["speakers", "list", "--store", str(empty)], "empty (0-byte) file"),
        (["identify", "x.wav", "--store", str(tmp_path / "s.sqlite"), "-k", "0"], "--top-k"),
        (["speakers", "import", str(blocker), "--store", str(tmp_path / "s.sqlite")], "header"),
    ]
    for args, needle in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and not isinstance(r.exception, Exception), (args, r.exception)
        assert r.output.startswith("error:") and needle in " ".join(r.output.split()), r.output
        assert "Traceback" not in r.output and r.output.count("error:") == 1, r.output
    assert empty.stat().st_size == 0


# ----------------------------------------------------------------------------- #11.1
def test_store_pooling_is_the_scoring_pooling(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"
    with SpeakerStore(path, MODEL, DIM) as st:
        for i in range(5):
            st.enroll(f"s{i}", rows(i, i + 1) * (i + 1), np.arange(1.0, i + 2), ["x"] * (i + 1))
        names, matrix = st.matrix()
        for name, row in zip(names, matrix, strict=True):
            utts = st.utterances(name)
            expected = enroll_mean(utts.embeddings, utts.durations, renormalize=True)
            np.testing.assert_array_equal(st.speaker_embedding(name), expected)
            np.testing.assert_allclose(row, expected, atol=1e-6)
        groups = np.repeat(np.arange(5), np.arange(1, 6))
        emb = np.concatenate([st.utterances(n).embeddings for n in names])
        dur = np.concatenate([st.utterances(n).durations for n in names])
        _, means = speaker_means(emb, groups, dur, renormalize=True)
        np.testing.assert_array_equal(matrix, means)
