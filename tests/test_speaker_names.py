"""Speaker names (issue #12.4): one normal form, unique regardless of case, shown literally.

Store-level cases run on random embeddings; the CLI cases enrol real wildmix recordings with
the shipped model, the way a user would.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from wildvox.cli.common import printable, shown
from wildvox.cli.main import app
from wildvox.store import (
    MAX_NAME_LENGTH,
    SpeakerConflict,
    SpeakerStore,
    StoreError,
    name_key,
    normalize_name,
)
from wildvox.store.schema import MIGRATIONS

DIM = 8
MODEL = "test-model"
runner = CliRunner()


def rows(seed: int, k: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((k, DIM)).astype(np.float32)


@pytest.fixture
def store(tmp_path: Path) -> SpeakerStore:
    st = SpeakerStore(tmp_path / "spk.db", MODEL, DIM)
    yield st  # type: ignore[misc]
    st.close()


# ----------------------------------------------------------------------------- store rules
def test_look_alike_names_are_one_speaker(store: SpeakerStore) -> None:
    for i, name in enumerate(["alice", "Alice", " alice", "alice ", "alice\u200b"]):
        rec = store.enroll(name, rows(i), [1.0], [f"{i}.wav"])
        assert rec.name == "alice" and rec.num_utterances == i + 1
    assert [r.name for r in store.list_speakers()] == ["alice"]
    assert store.get("ALICE").num_utterances == 5 and "\u200bAlIcE" in store
    assert store.utterances("Alice ").sources == [f"{i}.wav" for i in range(5)]
    assert store.remove("aLiCe").num_utterances == 5 and len(store) == 0


def test_names_keep_their_case_and_normal_form(store: SpeakerStore) -> None:
    assert store.enroll("Zoe\u0301  van\u00a0Dijk\t".strip(), rows(0), [1.0], ["a"]).name == (
        "Zo\u00e9 van Dijk"
    )
    assert store.get("zoé VAN dijk").name == "Zo\u00e9 van Dijk"  # NFC + case-insensitive
    assert store.enroll("\u202emallory", rows(1), [1.0], ["b"]).name == "mallory"  # bidi gone
    assert store.enroll("STRASSE", rows(2), [1.0], ["c"]).name == "STRASSE"
    assert store.enroll("straße", rows(3), [1.0], ["d"]).name == "STRASSE"  # casefold: ß = ss
    assert len(store) == 3
    assert name_key("ANN\u2003Lee") == name_key("ann lee") == "ann lee"


@pytest.mark.parametrize(
    ("name", "exc", "match"),
    [
        ("", ValueError, "empty"),
        ("   ", ValueError, "empty"),
        ("\u200b\u200d", ValueError, "empty"),
        ("a\tb", ValueError, "control character"),
        ("line\nbreak", ValueError, "control character"),
        ("\x1b[2Jred", ValueError, "control character"),
        ("c1\x9bcontrol", ValueError, "control character"),
        ("bad\udcffutf8", ValueError, "control character"),
        ("x" * (MAX_NAME_LENGTH + 1), ValueError, "limit"),
        (b"bytes", TypeError, "string"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(
    store: SpeakerStore, name: object, exc: type, match: str
) -> None:
    gen = store.generation()
    with pytest.raises(exc, match=match):
        store.enroll(name, rows(0), [1.0], ["a"])  # type: ignore[arg-type]
    assert len(store) == 0 and store.generation() == gen
    assert normalize_name("x" * MAX_NAME_LENGTH) == "x" * MAX_NAME_LENGTH


def _export(tmp_path: Path, names: list[str]) -> Path:
    with SpeakerStore(tmp_path / "src.db", MODEL, DIM) as src:
        for i, n in enumerate(names):
            src.enroll(n, rows(i), [1.0], [f"{i}.wav"])
        out = tmp_path / "export.jsonl"
        src.export(out)
    return out


@pytest.mark.parametrize(("bad", "match"), [("", "empty"), ("   ", "empty"), ("a\x1bb", "control")])
def test_import_applies_the_name_rules(
    store: SpeakerStore, tmp_path: Path, bad: str, match: str
) -> None:
    out = _export(tmp_path, ["ann", "bob"])
    lines = out.read_text().splitlines()
    speaker = json.loads(lines[2])
    speaker["name"] = bad
    out.write_text("\n".join([lines[0], lines[1], json.dumps(speaker)]) + "\n")
    with pytest.raises(StoreError, match=f"line 3: .*{match}") as info:
        store.import_(out)
    assert info.value.path == out and len(store) == 0


def test_import_refuses_look_alike_lines_and_matches_enrolled_names(
    store: SpeakerStore, tmp_path: Path
) -> None:
    out = _export(tmp_path, ["ann", "bob"])
    lines = out.read_text().splitlines()
    twin = json.loads(lines[1])
    twin["name"] = " ANN\u200b"
    twins = tmp_path / "twins.jsonl"
    twins.write_text("\n".join([*lines, json.dumps(twin)]) + "\n")
    with pytest.raises(StoreError, match=r"line 4: speaker 'ANN' is already on line 2 \('ann'\)"):
        store.import_(twins)
    assert len(store) == 0

    store.enroll("Ann", rows(9), [2.0], ["mine.wav"])
    with pytest.raises(SpeakerConflict, match="'Ann'"):
        store.import_(out)
    summary = store.import_(out, on_conflict="merge")
    assert (summary.added, summary.merged) == (1, 1)
    assert [r.name for r in store.list_speakers()] == ["Ann", "bob"]
    assert store.get("ann").num_utterances == 2


def _legacy_store(
    path: Path,
    names: list[str],
    model_id: str = MODEL,
    embeddings: np.ndarray | None = None,
    source: str = "a.wav",
) -> None:
    """A schema-1 store (before name keys) holding ``names`` as they were once accepted."""
    emb = rows(0, len(names)) if embeddings is None else embeddings
    old = type("V1Store", (SpeakerStore,), {"migrations": MIGRATIONS[:1]})
    old(path, model_id, emb.shape[1]).close()
    with sqlite3.connect(path) as raw:
        for name, row in zip(names, emb, strict=True):
            sid = raw.execute(
                "INSERT INTO speakers (name, created, updated) VALUES (?, 1, 1)", (name,)
            ).lastrowid
            raw.execute(
                "INSERT INTO utterances (speaker_id, source, duration, embedding, model_id, "
                "created) VALUES (?, ?, 3.0, ?, ?, 1)",
                (sid, source, row.astype("<f4").tobytes(), model_id),
            )
    raw.close()


ODD = ["alice", "Alice", "[/bold]", "\x1b[31mred", " padded ", "tab\there"]


def test_legacy_store_with_odd_and_look_alike_names_still_works(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _legacy_store(path, ODD)
    with SpeakerStore(path, MODEL, DIM) as st:  # migrated to the current schema
        assert sorted(r.name for r in st.list_speakers()) == sorted(ODD)
        assert st.get("alice").name == "alice" and st.get("Alice").name == "Alice"
        with pytest.raises(StoreError, match="matches several speakers"):
            st.get("ALICE")
        with pytest.raises(StoreError, match="matches several speakers"):
            st.enroll("ALICE", rows(0), [1.0], ["x"])
        assert st.get("padded").name == " padded " and st.get("tab here").name == "tab\there"
        assert st.remove("\x1b[31mred").name == "\x1b[31mred"
        assert st.remove("Alice").name == "Alice"
        assert st.enroll("ALICE", rows(1), [1.0], ["y"]).name == "alice"  # no longer ambiguous
        assert len(st.identify(rows(2)[0], top_k=10)) == len(ODD) - 2


# ----------------------------------------------------------------------------- display
def test_printable_makes_terminal_controls_visible() -> None:
    assert printable("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert printable("c1\x9b2J") == "c1\\x9b2J"
    assert printable("\u202eevil\u2066") == "\\u202eevil\\u2066"
    assert printable("zero\u200bwidth") == "zero\\u200bwidth"
    assert printable("Zo\u00e9 [b] :smile:") == "Zo\u00e9 [b] :smile:"


def test_shown_text_is_never_read_as_markup_or_emoji() -> None:
    console = Console(record=True, width=200, color_system=None)
    for name in ["[/bold]", "[white on white]mallory[/] alice", ":smile:", "back\\", "\x1b[2J"]:
        console.print(shown(name))
    text = console.export_text()
    assert text == "[/bold]\n[white on white]mallory[/] alice\n:smile:\nback\\\n\\x1b[2J\n"


# ----------------------------------------------------------------------------- CLI
def _opus(wildmix: Path, speaker: str, n: int) -> list[str]:
    return [str(p) for p in sorted((wildmix / "wav" / speaker).rglob("*.opus"))[:n]]


def _cli(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.output


def test_cli_markup_name_enrols_once_and_the_store_stays_usable(
    wildmix: Path, tmp_path: Path
) -> None:
    store = str(tmp_path / "s.sqlite")
    a, b, c = _opus(wildmix, "gcast-xandru-osuna", 3)
    code, out = _cli("enroll", "[/bold]", a, "--store", store)
    assert code == 0 and "enrolled [/bold]: 1 utterance(s)" in out, out
    code, out = _cli("enroll", "[white on white]mallory[/] alice", b, "--store", store)
    assert code == 0 and "[white on white]mallory[/] alice" in out, out
    code, out = _cli("speakers", "list", "--store", store)
    assert code == 0 and "[/bold]" in out and "[white on white]mallory[/] alice" in out, out
    code, out = _cli("identify", c, "--store", store, "-k", "2")
    assert code == 0 and "[/bold]" in out, out
    code, out = _cli("speakers", "show", "[/BOLD]", "--store", store)
    assert code == 0 and "[/bold]" in out, out
    code, out = _cli("speakers", "list", "--store", store, "--json")
    counts = {s["name"]: s["num_utterances"] for s in json.loads(out)["speakers"]}
    assert counts == {"[/bold]": 1, "[white on white]mallory[/] alice": 1}
    code, out = _cli("speakers", "remove", "[/BOLD]", "--store", store)
    assert code == 0 and "removed [/bold] (1 utterance(s))" in out, out


def test_cli_look_alikes_and_control_characters(wildmix: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite")
    files = _opus(wildmix, "ls1998", 5)
    for name, f in zip(["alice", "Alice", " alice", "alice ", "alice\u200b"], files, strict=True):
        code, out = _cli("enroll", name, f, "--store", store, "--json")
        assert code == 0 and json.loads(out)["speaker"] == "alice", out
    code, out = _cli("speakers", "list", "--store", store, "--json")
    assert [(s["name"], s["num_utterances"]) for s in json.loads(out)["speakers"]] == [("alice", 5)]
    for bad in ["\x1b[31mred", "", "   "]:
        code, out = _cli("enroll", bad, files[0], "--store", store)
        assert code == 2 and out.startswith("error:") and out.count("error:") == 1, out
        assert "\x1b" not in out, out
    code, out = _cli("speakers", "list", "--store", store, "--json")
    assert len(json.loads(out)["speakers"]) == 1


def test_cli_legacy_store_with_odd_names_lists_and_removes(wildmix: Path, tmp_path: Path) -> None:
    from wildvox.api import load_model

    model = load_model()
    emb = model.embed(_opus(wildmix, "ls1998", 1)[0])
    path = tmp_path / "old.sqlite"
    _legacy_store(path, ODD, model.model_id, np.tile(emb, (len(ODD), 1)), "\x1b]0;title\x07.wav")
    code, out = _cli("speakers", "list", "--store", str(path))
    assert code == 0 and "\x1b" not in out and "\\x1b[31mred" in out and "[/bold]" in out, out
    code, out = _cli("identify", _opus(wildmix, "ls1998", 2)[1], "--store", str(path), "-k", "9")
    assert code == 0 and "\x1b" not in out and "\\x1b[31mred" in out, out
    code, out = _cli("speakers", "show", "\x1b[31mred", "--store", str(path))
    assert code == 0 and "\x1b" not in out and "\\x1b]0;title\\x07.wav" in out, out
    code, out = _cli("speakers", "remove", "\x1b[31mred", "--store", str(path))
    assert code == 0 and "removed \\x1b[31mred" in out, out
    code, out = _cli("speakers", "remove", "ALICE", "--store", str(path))
    assert code == 2 and "matches several speakers" in " ".join(out.split()), out
