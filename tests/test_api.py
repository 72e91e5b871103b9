"""The product API and CLI on a tiny model trained and calibrated on a wildmix slice."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from e2e_helpers import tiny_config
from typer.testing import CliRunner

from wildvox.api import SpeakerModel, load_model
from wildvox.audio.io import AudioError
from wildvox.cli.main import app
from wildvox.data.corpora.voxceleb import load_corpus
from wildvox.inference.extract import extract_embeddings
from wildvox.inference.model_io import ModelFileError, load_exported, update_model_extra
from wildvox.scoring.calibration_trials import fit_model_calibration
from wildvox.store.schema import StoreModelMismatch
from wildvox.training.checkpoint import CheckpointError, load_checkpoint
from wildvox.training.trainer import Trainer

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(wildmix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("api")
    cfg = tiny_config(wildmix, tmp, ["train.epochs=1"])
    utts = load_corpus(cfg.dataset.train[0])
    result = Trainer(cfg, tmp / "run", utts).fit()
    exported = load_exported(result.model_dir)
    ext = extract_embeddings(exported.net, [str(u.path) for u in utts])
    cal = fit_model_calibration(
        ext.embeddings, ext.durations, [utts[i].speaker for i in ext.ok], n_per_class=200
    )
    update_model_extra(result.model_dir, "calibration", cal.to_dict())
    return result.model_dir


@pytest.fixture
def model(model_dir: Path, tmp_path: Path) -> SpeakerModel:
    return load_model(model_dir, store=tmp_path / "speakers.sqlite")


def _files(wildmix: Path, speaker: str, n: int) -> list[Path]:
    return sorted((wildmix / "wav" / speaker).rglob("*.opus"))[:n]


def test_embed_paths_and_arrays_agree(model: SpeakerModel, wildmix: Path) -> None:
    path = _files(wildmix, "gcast-xandru-osuna", 1)[0]
    wav, sr = sf.read(path, dtype="float32")
    a = model.embed(path)
    b = model.embed(wav, sample_rate=sr)
    assert a.shape == (32,) and a.dtype == np.float32
    assert np.allclose(a, b, atol=1e-5)
    batch = model.embed_batch([path, wav], sample_rate=sr)
    assert np.allclose(batch[0], a, atol=1e-4) and np.allclose(batch[1], a, atol=1e-4)


def test_verify_is_calibrated_and_flags_short_input(model: SpeakerModel, wildmix: Path) -> None:
    a, b = _files(wildmix, "gcast-xandru-osuna", 2)
    v = model.verify(a, b)
    assert -1.0 <= v.score <= 1.0 and np.isfinite(v.llr)
    assert v.accept == (v.llr >= v.threshold)
    assert model.verify(a, b, "far=1%").threshold >= model.verify(a, b, "far=10%").threshold
    wav, sr = sf.read(a, dtype="float32")
    short = model.verify(wav[: int(0.6 * sr)], b, sample_rate=sr)
    assert not short.reliable and "less reliable" in short.note
    with pytest.raises(ValueError, match="unknown operating point"):
        model.verify(a, b, "far=lots")


def test_enroll_and_identify(model: SpeakerModel, wildmix: Path) -> None:
    alice = _files(wildmix, "gcast-xandru-osuna", 4)
    bob = _files(wildmix, "ls1998", 4)
    assert model.enroll("alice", alice[:3]) == 3
    assert model.enroll("bob", bob[:3]) == 3
    assert model.enroll("alice", alice[3:]) == 4  # enrolling more updates the speaker
    r = model.identify(alice[0], top_k=2)
    assert r.candidates[0].name == "alice"
    assert len(r.candidates) == 2
    assert r.speaker == ("alice" if r.candidates[0].llr >= r.threshold else None)


# veri_test speakers, none of them seen in the shipped model's training or calibration
ENROLLED = ["gcast-xandru-osuna", "ls1998", "gcen-julia-wycherley", "ls2033"]
NEVER_ENROLLED = ["ls3005", "gcth-susan-rich", "gcso-m-i-mursal"]


def test_shipped_model_rejects_speakers_never_enrolled(wildmix: Path, tmp_path: Path) -> None:
    """Open set with the shipped model: 4 speakers enrolled from 3 utterances each; at
    ``far=1%`` (corrected for 4 enrolled speakers) their other utterances are named and
    utterances of 3 speakers never enrolled come out unknown.

    Measured with the shipped calibration of commit 465dd2c: known LLRs 4.43-6.80, unknown
    2.20 at most, threshold 2.98; at ``eer`` (-0.15) 3 of the 6 unknown queries are accepted
    as someone, so the operating point is what rejects them. ``far=1%`` bounds a rate, it does
    not promise zero: ls533, close to the enrolled ls1998, has its first utterance accepted as
    ls1998 (LLR 3.08), which is why it is not in this list."""
    model = load_model(store=tmp_path / "open_set.sqlite")
    for name in ENROLLED:
        model.enroll(name, _files(wildmix, name, 3))
    for name in ENROLLED:
        for query in _files(wildmix, name, 5)[3:]:
            assert model.identify(query, operating_point="far=1%").speaker == name, query
    for name in NEVER_ENROLLED:
        for query in _files(wildmix, name, 2):
            r = model.identify(query, operating_point="far=1%")
            assert r.speaker is None, (query, r.candidates[0])
            assert r.candidates[0].name in ENROLLED  # a nearest speaker exists, below threshold


def test_bad_inputs_are_clear_and_store_is_untouched(
    model: SpeakerModel, wildmix: Path, tmp_path: Path
) -> None:
    good = _files(wildmix, "gcast-xandru-osuna", 2)
    model.enroll("carol", good[:1])
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, np.random.default_rng(0).normal(0, 0.1, 1600).astype(np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    stereo = tmp_path / "stereo8k.wav"
    sf.write(stereo, np.random.default_rng(1).normal(0, 0.1, (16000, 2)), 8000)
    for bad, reason in [(text, "notes.wav"), (empty, "empty"), (tiny, "too short"),
                        (nan, "NaN"), (tmp_path / "missing.wav", "missing")]:  # fmt: skip
        with pytest.raises(AudioError, match=reason):
            model.enroll("carol", [good[1], bad])
    assert model.store().get("carol").num_utterances == 1  # nothing of the failed calls landed
    assert model.embed(stereo).shape == (32,)  # 8 kHz stereo is mixed and resampled


def test_other_models_store_is_refused(model_dir: Path, tmp_path: Path, wildmix: Path) -> None:
    store = tmp_path / "s.sqlite"
    m = load_model(model_dir, store=store)
    m.enroll("x", _files(wildmix, "ls1998", 1))
    m.close()
    m.exported.model_id = "another-model"
    with pytest.raises(StoreModelMismatch):
        m.enroll("y", _files(wildmix, "ls1998", 1))


def _bomb() -> tuple[object, tuple[str]]:
    return (print, ("pwned",))


class Bomb:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _bomb()


def test_pickle_bomb_checkpoint_and_broken_model_are_refused(
    tmp_path: Path, model_dir: Path
) -> None:
    bomb = tmp_path / "last.pt"
    with bomb.open("wb") as fh:
        pickle.dump({"net": Bomb()}, fh)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(bomb)
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "model.json").write_text((model_dir / "model.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(broken)
    with pytest.raises(ModelFileError, match="missing"):
        load_model(tmp_path / "nowhere")


def test_cli_round_trip(model_dir: Path, wildmix: Path, tmp_path: Path) -> None:
    store = tmp_path / "cli.sqlite"
    files = [str(p) for p in _files(wildmix, "gcast-xandru-osuna", 3)]
    common = ["--model", str(model_dir)]
    r = runner.invoke(app, ["enroll", "alice", *files[:2], *common, "--store", str(store)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["verify", files[0], files[2], *common, "--json"])
    out = json.loads(r.stdout)
    assert r.exit_code == (0 if out["accept"] else 1), r.output  # 0 accept, 1 reject
    assert set(out) >= {"score", "llr", "accept", "threshold"}
    r = runner.invoke(app, ["identify", files[2], *common, "--store", str(store), "--json"])
    answer = json.loads(r.stdout)
    assert r.exit_code == (0 if answer["speaker"] else 1), r.output  # 0 named, 1 unknown
    assert answer["candidates"][0]["name"] == "alice"
    r = runner.invoke(app, ["speakers", "list", *common, "--store", str(store), "--json"])
    assert json.loads(r.stdout)["speakers"][0]["num_utterances"] == 2
    exported = tmp_path / "speakers.jsonl"  # JSON Lines (a .json name is refused)
    assert (
        runner.invoke(
            app, ["speakers", "export", str(exported), *common, "--store", str(store)]
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            app, ["speakers", "remove", "alice", *common, "--store", str(store)]
        ).exit_code
        == 0
    )
    r = runner.invoke(app, ["speakers", "import", str(exported), *common, "--store", str(store)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["verify", files[0], str(tmp_path / "nope.wav"), *common])
    assert r.exit_code == 2 and "nope.wav" in r.output


def test_embed_dir_reports_the_bad_file_and_keeps_the_good(
    model_dir: Path, wildmix: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in _files(wildmix, "gcast-xandru-osuna", 2):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.wav").write_text("garbage")
    out = tmp_path / "emb.npz"
    r = runner.invoke(app, ["embed", str(folder), "--model", str(model_dir), "-o", str(out)])
    assert r.exit_code == 1 and "broken.wav" in r.output
    data = np.load(out)
    assert sorted(data["ids"].tolist()) == sorted(
        p.name for p in _files(wildmix, "gcast-xandru-osuna", 2)
    )


def _enroll_many(model_dir: str, store: str, prefix: str, wav: str) -> None:
    torch.set_num_threads(1)
    m = load_model(model_dir, store=store)
    for i in range(5):
        m.enroll(f"{prefix}{i}", [wav])
    m.close()


def test_two_processes_enrolling_at_once_both_land(
    model_dir: Path, wildmix: Path, tmp_path: Path
) -> None:
    store = tmp_path / "shared.sqlite"
    wav = str(_files(wildmix, "ls1998", 1)[0])
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_enroll_many, args=(str(model_dir), str(store), p, wav))
             for p in ("a", "b")]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    m = load_model(model_dir, store=store)
    assert len(m.store().list_speakers()) == 10
