"""Speaker store (SQLite) and vector search: round trips, safety, concurrency, recall."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from wildvox.store import (
    ApproxIndex,
    ExactIndex,
    SpeakerConflict,
    SpeakerStore,
    StoreError,
    StoreModelMismatch,
    UnknownSpeaker,
    build_index,
    search,
)
from wildvox.store.schema import MIGRATIONS, Migration

DIM = 8
MODEL = "test-model"


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def enroll_random(store: SpeakerStore, name: str, rng: np.random.Generator, k: int = 2) -> None:
    store.enroll(
        name,
        unit_rows(rng, k, store.embed_dim),
        np.full(k, 2.0),
        [f"{name}/{i}.wav" for i in range(k)],
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpeakerStore]:
    with SpeakerStore(tmp_path / "spk.db", MODEL, DIM) as st:
        yield st


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


# ----------------------------------------------------------------------------- basic API
def test_enroll_update_list_get(store: SpeakerStore) -> None:
    eye = np.eye(DIM, dtype=np.float32)
    rec = store.enroll("ann", eye[:2], [3.0, 1.0], ["a.wav", "b.wav"])
    assert (rec.name, rec.num_utterances, rec.total_duration) == ("ann", 2, 4.0)
    store.enroll("bob", eye[2:3] * 5, [2.5], ["c.wav"])
    time.sleep(0.01)
    rec2 = store.enroll("ann", eye[3:4], [0.5], ["d.wav"])
    assert (rec2.num_utterances, rec2.total_duration) == (3, 4.5)
    assert rec2.created == rec.created and rec2.updated > rec.updated
    assert [r.name for r in store.list_speakers()] == ["ann", "bob"]
    assert store.get("bob").num_utterances == 1 and len(store) == 2 and "ann" in store
    utts = store.utterances("ann")
    assert utts.sources == ["a.wav", "b.wav", "d.wav"]
    np.testing.assert_array_equal(utts.embeddings, eye[[0, 1, 3]])


def test_speaker_embedding_is_duration_weighted_mean_of_unit_vectors(store: SpeakerStore) -> None:
    # Lengths 2 and 10 must not matter; durations 3 s and 1 s weigh 3:1.
    emb = np.zeros((2, DIM), dtype=np.float32)
    emb[0, 0], emb[1, 1] = 2.0, 10.0
    store.enroll("ann", emb, [3.0, 1.0], ["a", "b"])
    expected = np.zeros(DIM, dtype=np.float32)
    expected[:2] = np.array([3.0, 1.0]) / np.sqrt(10.0)
    np.testing.assert_allclose(store.speaker_embedding("ann"), expected, atol=1e-6)
    names, mat = store.matrix()
    assert names == ["ann"]
    np.testing.assert_allclose(mat[0], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("emb", "dur", "src", "exc"),
    [
        (np.ones((2, DIM + 1)), [1.0, 1.0], ["a", "b"], ValueError),  # wrong dim
        (np.ones(DIM), [1.0], ["a"], ValueError),  # (D,) instead of (K, D)
        (np.full((1, DIM), np.nan), [1.0], ["a"], ValueError),
        (np.zeros((1, DIM)), [1.0], ["a"], ValueError),
        (np.ones((2, DIM)), [1.0, 0.0], ["a", "b"], ValueError),
        (np.ones((2, DIM)), [1.0], ["a", "b"], ValueError),
        (np.ones((2, DIM)), [1.0, 1.0], ["a"], ValueError),
        (np.ones((1, DIM), dtype=np.int64), [1.0], ["a"], TypeError),
    ],
)
def test_bad_enrolment_writes_nothing(
    store: SpeakerStore, emb: np.ndarray, dur: list[float], src: list[str], exc: type
) -> None:
    gen = store.generation()
    with pytest.raises(exc):
        store.enroll("ann", emb, dur, src)
    assert len(store) == 0 and store.generation() == gen


def test_remove_cascades_and_unknown_speaker(store: SpeakerStore) -> None:
    rng = np.random.default_rng(0)
    enroll_random(store, "ann", rng, 3)
    enroll_random(store, "bob", rng, 1)
    store.remove("ann")
    assert [r.name for r in store.list_speakers()] == ["bob"]
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM utterances").fetchone()[0] == 1
    with pytest.raises(UnknownSpeaker, match="ann") as info:
        store.remove("ann")
    assert isinstance(info.value, KeyError) and str(store.path) in str(info.value)
    with pytest.raises(KeyError):
        store.get("ann")
    with pytest.raises(UnknownSpeaker):
        store.speaker_embedding("nobody")


# ----------------------------------------------------------------------------- export / import
def test_export_import_round_trip_and_conflicts(store: SpeakerStore, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ["ann", "bob", "cy"]:
        enroll_random(store, name, rng, 3)
    out = tmp_path / "export.jsonl"
    assert store.export(out) == 3
    header = json.loads(out.read_text().splitlines()[0])
    assert header["model_id"] == MODEL and header["embed_dim"] == DIM

    with SpeakerStore(tmp_path / "copy.db", MODEL, DIM) as copy:
        summary = copy.import_(out)
        assert (summary.added, summary.utterances) == (3, 9)
        for rec_a, rec_b in zip(store.list_speakers(), copy.list_speakers(), strict=True):
            assert rec_a == rec_b
            a, b = store.utterances(rec_a.name), copy.utterances(rec_b.name)
            assert a.sources == b.sources
            np.testing.assert_array_equal(a.embeddings, b.embeddings)
            np.testing.assert_array_equal(a.durations, b.durations)

        gen = copy.generation()
        with pytest.raises(SpeakerConflict, match="3 imported speakers"):
            copy.import_(out)
        assert copy.generation() == gen

        assert copy.import_(out, on_conflict="merge").utterances == 0  # idempotent
        enroll_random(copy, "ann", rng, 1)
        assert copy.get("ann").num_utterances == 4
        summary = copy.import_(out, on_conflict="replace")
        assert summary.replaced == 3 and copy.get("ann").num_utterances == 3
        np.testing.assert_array_equal(
            copy.utterances("ann").embeddings, store.utterances("ann").embeddings
        )


def test_import_refuses_other_model_and_malformed_files(
    store: SpeakerStore, tmp_path: Path
) -> None:
    rng = np.random.default_rng(2)
    enroll_random(store, "ann", rng)
    out = tmp_path / "export.jsonl"
    store.export(out)
    with SpeakerStore(tmp_path / "other.db", "other-model", DIM) as other:
        with pytest.raises(StoreModelMismatch, match="other-model"):
            other.import_(out)
        assert len(other) == 0

    lines = out.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["utterances"][0]["embedding"] = bad["utterances"][0]["embedding"][:-8]
    broken = tmp_path / "broken.jsonl"
    good_line = lines[1].replace('"ann"', '"zed"')
    broken.write_text("\n".join([lines[0], good_line, json.dumps(bad)]) + "\n")
    with SpeakerStore(tmp_path / "fresh.db", MODEL, DIM) as fresh:
        with pytest.raises(StoreError, match="line 3") as info:
            fresh.import_(broken)
        assert info.value.path == broken
        assert len(fresh) == 0  # the valid first speaker was not written either


# ----------------------------------------------------------------------------- file safety
def test_model_mismatch_refused(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"
    SpeakerStore(path, MODEL, DIM).close()
    with pytest.raises(StoreModelMismatch) as info:
        SpeakerStore(path, "another", DIM)
    assert info.value.stored == (MODEL, DIM) and info.value.requested == ("another", DIM)
    copy = pickle.loads(pickle.dumps(info.value))  # errors cross process boundaries intact
    assert str(copy) == str(info.value) and copy.requested == ("another", DIM)
    unknown = pickle.loads(pickle.dumps(UnknownSpeaker(path, "zed")))
    assert unknown.name == "zed" and str(path) in str(unknown)
    with pytest.raises(StoreModelMismatch, match="dim 16"):
        SpeakerStore(path, MODEL, 16)


def test_not_sqlite_file_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 100
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not an SQLite database") as info:
        SpeakerStore(path, MODEL, DIM)
    assert str(path) in str(info.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_corrupt_store_raises_store_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"
    with SpeakerStore(path, MODEL, DIM) as st:
        for i in range(40):
            enroll_random(st, f"s{i}", np.random.default_rng(i), 3)
    data = bytearray(path.read_bytes())
    data[4096:-100] = np.random.default_rng(0).bytes(len(data) - 4196)  # keep the header page
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="malformed") as info, SpeakerStore(path, MODEL, DIM) as st:
        st.matrix()
    assert info.value.path == path and path.read_bytes() == bytes(data)


def test_foreign_sqlite_database_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER)")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a speaker store"):
        SpeakerStore(path, MODEL, DIM)
    assert path.read_bytes() == before


def test_migration_from_version_0_file(tmp_path: Path) -> None:
    path = tmp_path / "v0.db"
    with sqlite3.connect(path) as raw:  # a non-empty SQLite file at user_version 0
        raw.execute("CREATE TABLE scratch (x)")
        raw.execute("DROP TABLE scratch")
    raw.close()
    assert path.stat().st_size > 0
    with SpeakerStore(path, MODEL, DIM) as st:
        enroll_random(st, "ann", np.random.default_rng(3))
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 2
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_pending_migrations_apply_in_order_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"
    with SpeakerStore(path, MODEL, DIM) as st:
        enroll_random(st, "ann", np.random.default_rng(4))
    applied: list[int] = []

    def add_column(conn: sqlite3.Connection) -> None:
        applied.append(2)
        conn.execute("ALTER TABLE speakers ADD COLUMN note TEXT")

    def failing(conn: sqlite3.Connection) -> None:
        applied.append(3)
        raise RuntimeError("migration 3 failed")

    def add_index(conn: sqlite3.Connection) -> None:
        applied.append(3)
        conn.execute("CREATE INDEX speakers_note ON speakers(note)")

    def store_with(migrations: tuple[Migration, ...]) -> type[SpeakerStore]:
        return type("Future", (SpeakerStore,), {"migrations": migrations})

    with pytest.raises(RuntimeError, match="migration 3"):
        store_with((*MIGRATIONS, add_column, failing))(path, MODEL, DIM)
    with sqlite3.connect(path) as raw:  # rolled back as a whole: still the version, no column
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        cols = [r[1] for r in raw.execute("PRAGMA table_info(speakers)")]
        assert "note" not in cols
    raw.close()

    applied.clear()
    with store_with((*MIGRATIONS, add_column, add_index))(path, MODEL, DIM) as st:
        assert applied == [2, 3] and st.get("ann").num_utterances == 2
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 2
    raw.close()
    with pytest.raises(StoreError, match="newer than supported"):
        SpeakerStore(path, MODEL, DIM)


# ----------------------------------------------------------------------------- processes
ENROLL_LOOP = """
import sys, time, numpy as np
from wildvox.store import SpeakerStore
path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
start_at = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
rng = np.random.default_rng(abs(hash(prefix)) % 2**32)
with SpeakerStore(path, "test-model", 8) as st:
    time.sleep(max(0.0, start_at - time.time()))  # line both writers up
    for i in range(count):
        x = rng.standard_normal((3, 8)).astype(np.float32)
        st.enroll(f"{prefix}{i:04d}", x, [1.0, 2.0, 3.0], ["a", "b", "c"])
        print(f"{prefix}{i:04d}", flush=True)
"""


def assert_whole_speakers(path: Path, expected: set[str]) -> None:
    with SpeakerStore(path, MODEL, DIM) as st:
        records = st.list_speakers()
        assert {r.name for r in records} >= expected
        assert all(r.num_utterances == 3 for r in records), "half-written speaker found"
        names, mat = st.matrix()
        assert len(names) == len(records) and np.isfinite(mat).all()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()


def test_sigkill_during_enrolment_loop_leaves_whole_speakers(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"
    child = run_child(ENROLL_LOOP, str(path), "k", "100000")
    assert child.stdout is not None
    committed = {child.stdout.readline().strip() for _ in range(20)}
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert_whole_speakers(path, committed)


CRASH_BETWEEN_INSERTS = """
import os, sys, numpy as np
from wildvox.store import SpeakerStore

class Crashing(SpeakerStore):
    inserts = 0
    def _insert_utterance(self, *args):
        super()._insert_utterance(*args)
        Crashing.inserts += 1
        if Crashing.inserts == 3 * 3 + 2:  # inside the 4th speaker, after 2 of 3 utterances
            os._exit(7)

with Crashing(sys.argv[1], "test-model", 8) as st:
    for i in range(10):
        st.enroll(f"s{i}", np.ones((3, 8), np.float32), [1.0, 1.0, 1.0], ["a", "b", "c"])
"""


def test_process_dying_between_inserts_leaves_no_half_speaker(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"
    child = run_child(CRASH_BETWEEN_INSERTS, str(path))
    _, err = child.communicate(timeout=60)
    assert child.returncode == 7, err
    assert_whole_speakers(path, {"s0", "s1", "s2"})
    with SpeakerStore(path, MODEL, DIM) as st:
        assert "s3" not in st and len(st) == 3


def test_two_processes_enrol_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "spk.db"  # both processes also race to create the file
    start_at = str(time.time() + 1.5)
    children = [run_child(ENROLL_LOOP, str(path), p, "50", start_at) for p in ("a", "b")]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    assert_whole_speakers(path, {f"{p}{i:04d}" for p in "ab" for i in range(50)})
    with SpeakerStore(path, MODEL, DIM) as st:
        assert len(st) == 100


# ----------------------------------------------------------------------------- search
def test_matrix_cache_follows_change_counter(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "spk.db"
    with SpeakerStore(path, MODEL, DIM) as a, SpeakerStore(path, MODEL, DIM) as b:
        enroll_random(a, "ann", rng)
        names, m1 = a.matrix()
        assert a.matrix()[1] is m1 and not m1.flags.writeable
        enroll_random(b, "bob", rng)  # another connection writes
        names2, m2 = a.matrix()
        assert names == ["ann"] and names2 == ["ann", "bob"] and m2 is not m1
        b.remove("ann")
        assert a.identify(m2[1], top_k=5) == [("bob", pytest.approx(1.0, abs=1e-5))]


def test_exact_search_equals_brute_force(store: SpeakerStore) -> None:
    rng = np.random.default_rng(6)
    for i in range(200):
        enroll_random(store, f"s{i:03d}", rng, k=int(rng.integers(1, 4)))
    names, mat = store.matrix()
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    brute = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ mat.T
    for q, row in zip(queries, brute, strict=True):
        got = store.identify(q * 3.0, top_k=7)
        order = np.argsort(-row)[:7]
        assert [n for n, _ in got] == [names[i] for i in order]
        np.testing.assert_allclose([s for _, s in got], row[order], atol=1e-5)
    assert len(store.identify(queries[0], top_k=1000)) == 200
    with pytest.raises(ValueError, match="shape"):
        store.identify(np.ones(DIM + 1, np.float32))


def test_exact_index_ids_and_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "_EXACT_BLOCK", 500 * 7)  # queries in blocks of 7
    rng = np.random.default_rng(7)
    base = unit_rows(rng, 500, 16)
    index = ExactIndex(16)
    index.add(np.arange(1000, 1250), base[:250])
    index.add(np.arange(1250, 1500), base[250:])
    queries = unit_rows(rng, 300, 16)
    scores, ids = index.search(queries, 5)
    expected = np.argsort(-(queries @ base.T), axis=1)[:, :5] + 1000
    np.testing.assert_array_equal(ids, expected)
    assert scores.shape == (300, 5) and (np.diff(scores, axis=1) <= 0).all()
    removed = np.unique(expected[:20, 0])  # the best match of the first 20 queries
    index.remove(removed)
    assert len(index) == 500 - removed.size
    ranking = np.argsort(-(queries[:20] @ base.T), axis=1) + 1000
    _, ids_after = index.search(queries[:20], 4)
    for got, full in zip(ids_after, ranking, strict=True):
        np.testing.assert_array_equal(got, full[~np.isin(full, removed)][:4])
    with pytest.raises(ValueError, match="shape"):
        index.search(queries[:, :8], 1)
    with pytest.raises(ValueError, match="k must be"):
        index.search(queries, 0)


def test_approx_recall_at_1_on_20k_x_256() -> None:
    rng = np.random.default_rng(8)
    base = unit_rows(rng, 20_000, 256)
    ids = np.arange(20_000)
    src = rng.integers(0, 20_000, 300)
    noise = rng.standard_normal((300, 256)).astype(np.float32)
    queries = base[src] + 1.2 * noise / np.sqrt(256)  # cosine to the source ~0.64
    exact = ExactIndex(256)
    exact.add(ids, base)
    _, top_exact = exact.search(queries, 1)
    hnsw = ApproxIndex(256, method="hnsw", ef_construction=20, num_threads=1)  # cheap build
    ivf = ApproxIndex(256, method="ivf_flat", nprobe=64, num_threads=1)  # 64 of 141 cells
    for approx in (hnsw, ivf):
        approx.add(ids, base)
        assert len(approx) == 20_000
        a_scores, top_approx = approx.search(queries, 1)
        recall = float(np.mean(top_exact[:, 0] == top_approx[:, 0]))
        assert recall >= 0.95, (approx.method, recall)
        own = np.sum(base[top_approx[:, 0]] * queries, axis=1) / np.linalg.norm(queries, axis=1)
        np.testing.assert_allclose(a_scores[:, 0], own, atol=1e-4)


def test_ivf_flat_finds_exact_neighbours() -> None:
    rng = np.random.default_rng(9)
    base = unit_rows(rng, 2000, 32)
    index = ApproxIndex(32, method="ivf_flat", nprobe=1000, num_threads=1)
    index.add(np.arange(2000), base)
    _, top = index.search(base[:50], 1)
    np.testing.assert_array_equal(top[:, 0], np.arange(50))
    index.remove(np.arange(0, 50, 2))
    assert len(index) == 1975 and index.num_removed == 25
    _, top = index.search(base[:50], 1)
    np.testing.assert_array_equal(top[1::2, 0], np.arange(1, 50, 2))
    assert not np.isin(top[::2, 0], np.arange(0, 50, 2)).any()


def test_store_switches_to_approx_above_threshold_and_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(10)
    with SpeakerStore(tmp_path / "spk.db", MODEL, DIM, approx_threshold=30, search_threads=1) as st:
        for i in range(29):
            enroll_random(st, f"s{i}", rng, 1)
        assert isinstance(st.index().index, ExactIndex)
        enroll_random(st, "s29", rng, 1)
        index = st.index().index
        assert isinstance(index, ApproxIndex) and len(index) == 30
        assert st.identify(st.speaker_embedding("s7"), top_k=1)[0][0] == "s7"
    monkeypatch.setattr(search, "faiss_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="wildvox.store.search"):
        index = build_index(unit_rows(rng, 40), approx_threshold=30)
    assert isinstance(index, ExactIndex) and "faiss is not installed" in caplog.text


def test_approx_index_follows_changes_without_rebuild(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    path = tmp_path / "spk.db"
    opts = {"approx_threshold": 40, "search_threads": 1}
    with SpeakerStore(path, MODEL, DIM, **opts) as st, SpeakerStore(path, MODEL, DIM) as other:
        for i in range(60):
            enroll_random(st, f"s{i:02d}", rng, 2)
        live = st.index()
        assert isinstance(live.index, ApproxIndex) and live.last_sync["rebuilt"] == 1
        enroll_random(other, "new", rng, 1)  # added by another connection
        enroll_random(other, "s05", rng, 3)  # s05's embedding moves
        other.remove("s07")
        assert st.identify(other.speaker_embedding("new"), top_k=1)[0][0] == "new"
        assert live.last_sync == {
            "seconds": pytest.approx(live.last_sync["seconds"]),
            "rebuilt": 0.0,
            "changed": 2.0,
            "removed": 1.0,
        }
        assert len(live.index) == 60
        names, mat = st.matrix()
        with SpeakerStore(path, MODEL, DIM) as fresh:  # incremental matrix == full re-read
            fresh_names, fresh_mat = fresh.matrix()
        assert names == fresh_names and "s07" not in names
        np.testing.assert_array_equal(mat, fresh_mat)
        for row, name in zip(mat, names, strict=True):  # tiny graph: exact answers
            assert st.identify(row, top_k=1)[0] == (name, pytest.approx(1.0, abs=1e-5))
        for i in range(20, 40):  # many removals: the graph is rebuilt
            st.remove(f"s{i:02d}")
        st.identify(mat[0], top_k=1)
        assert live.last_sync["rebuilt"] == 1 and isinstance(live.index, ApproxIndex)
