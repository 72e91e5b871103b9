"""The HTTP service (wildvox serve): through FastAPI's TestClient, and one real uvicorn
process on a free localhost port started by the CLI (keys made and revoked by the CLI too)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from fastapi.testclient import TestClient

import wildvox
from wildvox.api import SpeakerModel
from wildvox.audio.io import load_audio
from wildvox.service.app import ServiceConfig, create_app
from wildvox.service.keys import ApiKeyError, ApiKeys, keys_path

REPO = Path(__file__).resolve().parents[1]
A = ["ls2414/128291/00001.opus", "ls2414/128291/00002.opus", "ls2414/128291/00004.opus"]
B = ["ls2609/156975/00001.opus", "ls2609/156975/00002.opus", "ls2609/156975/00004.opus"]


@pytest.fixture(scope="module")
def model() -> Iterator[SpeakerModel]:
    m = wildvox.load_model()
    yield m
    m.close()


def _upload(wildmix: Path, rel: str) -> tuple[str, bytes, str]:
    return Path(rel).name, (wildmix / "wav" / rel).read_bytes(), "audio/ogg"


def _client(model: SpeakerModel, store: Path, **config: object) -> TestClient:
    return TestClient(create_app(ServiceConfig(store=store, **config), model=model))  # type: ignore[arg-type]


def _error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and body["message"], body
    return body


# ---------------------------------------------------------------- keys
def test_keys_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    keys = ApiKeys(keys_path(tmp_path / "speakers.sqlite"))
    key1, info1 = keys.add("laptop")
    key2, info2 = keys.add("ci")
    text = keys.path.read_text()
    assert key1.split("_", 2)[2] not in text and key2.split("_", 2)[2] not in text
    assert info1.salt != info2.salt and info1.digest != info2.digest
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert keys.path.parent == tmp_path
    assert keys.check(key1) == info1.key_id and keys.check(key2) == info2.key_id
    # right id, wrong secret; another key's secret under this id; garbage
    assert keys.check(key1[:-1] + ("A" if key1[-1] != "A" else "B")) is None
    assert keys.check(f"wvx_{info1.key_id}_{key2.split('_', 2)[2]}") is None
    assert keys.check("") is None and keys.check("wvx__") is None
    # another process (the CLI) revoking is seen by this reader
    ApiKeys(keys.path).revoke(info1.key_id)
    assert keys.check(key1) is None and keys.check(key2) == info2.key_id
    assert [k.label for k in keys.list()] == ["ci"]
    with pytest.raises(ApiKeyError, match="no API key"):
        keys.revoke(info1.key_id)
    with pytest.raises(ApiKeyError, match="label"):
        keys.add("bad\nlabel")


# ---------------------------------------------------------------- TestClient
def test_auth_is_required_and_checked(model: SpeakerModel, tmp_path: Path) -> None:
    store = tmp_path / "speakers.sqlite"
    with pytest.raises(ValueError, match="no API keys"):
        create_app(ServiceConfig(store=store), model=model)
    keys = ApiKeys(keys_path(store))
    key, info = keys.add("test")
    with _client(model, store) as client:
        assert client.get("/healthz").json()["auth"] is True  # no key needed
        _error(client.get("/v1/speakers"), 401, "unauthorized")
        _error(client.get("/v1/speakers", headers={"X-API-Key": key + "x"}), 401, "unauthorized")
        assert client.get("/v1/speakers", headers={"X-API-Key": key}).json() == {"speakers": []}
        # a wrong key is refused before the body is read: no 413 / 422 for it
        body = {"file": ("x.wav", b"0" * 100, "audio/wav")}
        _error(client.post("/v1/identify", files=body), 401, "unauthorized")
        keys.revoke(info.key_id)
        _error(client.get("/v1/speakers", headers={"X-API-Key": key}), 401, "unauthorized")
        spec = client.get("/openapi.json").json()
        assert "X-API-Key" in str(spec["components"]["securitySchemes"])
        assert {
            "/v1/embed",
            "/v1/verify",
            "/v1/enroll",
            "/v1/identify",
            "/v1/speakers",
            "/v1/speakers/{name}",
            "/v1/diarize",
            "/healthz",
        } <= set(spec["paths"])


def test_enroll_verify_identify_and_speakers(
    model: SpeakerModel, wildmix: Path, tmp_path: Path
) -> None:
    store = tmp_path / "speakers.sqlite"
    with _client(model, store, auth=False) as client:
        _error(
            client.post("/v1/identify", files={"file": _upload(wildmix, A[2])}), 409, "no_speakers"
        )
        for name, files in (("Alice", A[:2]), ("bob", B[:2])):
            r = client.post(
                "/v1/enroll",
                data={"name": name},
                files=[("files", _upload(wildmix, f)) for f in files],
            )
            assert r.status_code == 200, r.text
            assert r.json()["name"] == name and r.json()["num_utterances"] == 2
        same = client.post(
            "/v1/verify",
            data={"operating_point": "far=1%"},
            files={"a": _upload(wildmix, A[0]), "b": _upload(wildmix, A[2])},
        )
        other = client.post(
            "/v1/verify", files={"a": _upload(wildmix, A[2]), "b": _upload(wildmix, B[2])}
        )
        assert same.status_code == other.status_code == 200
        s, o = same.json(), other.json()
        assert (
            s["accept"] is True and s["operating_point"] == "far=1%" and s["llr"] > s["threshold"]
        )
        assert o["accept"] is False and o["operating_point"] == "eer" and o["llr"] < o["threshold"]
        assert s["score"] > o["score"]
        for query, who in ((A[2], "Alice"), (B[2], "bob")):
            r = client.post(
                "/v1/identify", data={"top_k": "2"}, files={"file": _upload(wildmix, query)}
            )
            assert r.status_code == 200, r.text
            assert r.json()["speaker"] == who and len(r.json()["candidates"]) == 2
        emb = client.post("/v1/embed", files={"file": _upload(wildmix, A[0])}).json()
        assert emb["dim"] == len(emb["embedding"]) == model.embed_dim and emb["speech"] > 0.2
        assert [s["name"] for s in client.get("/v1/speakers").json()["speakers"]] == [
            "Alice",
            "bob",
        ]
        assert client.get("/v1/speakers/ALICE").json()["num_utterances"] == 2
        assert client.delete("/v1/speakers/Bob").json()["removed"]["name"] == "bob"
        assert _error(client.get("/v1/speakers/bob"), 404, "unknown_speaker")["name"] == "bob"
        _error(client.delete("/v1/speakers/bob"), 404, "unknown_speaker")
        page = client.get("/")
        assert page.status_code == 200 and 'id="verify-submit"' in page.text
        assert "MediaRecorder" in client.get("/static/app.js").text


def test_bad_requests_get_json_4xx_and_leave_the_store(
    model: SpeakerModel, wildmix: Path, tmp_path: Path
) -> None:
    store = tmp_path / "speakers.sqlite"
    with _client(model, store, auth=False, max_upload_bytes=300_000, max_seconds=5.0) as client:
        ok = _upload(wildmix, A[0])
        r = client.post("/v1/enroll", data={"name": "alice"}, files=[("files", ok)])
        assert r.status_code == 200
        r = client.post("/v1/enroll", data={"name": "team/bo"}, files=[("files", ok)])
        assert r.status_code == 200, r.text  # a name with a slash is addressable
        assert client.get("/v1/speakers/team%2Fbo").json()["name"] == "team/bo"
        before = client.get("/v1/speakers").json()
        # not audio: 422 naming the form field and file
        bad = _error(
            client.post("/v1/verify", files={"a": ok, "b": ("notes.wav", b"hello", "audio/wav")}),
            422,
            "bad_audio",
        )
        assert bad["field"] == "b" and bad["filename"] == "notes.wav"
        # one bad file in an enrollment writes nothing
        files = [
            ("files", ok),
            ("files", ("x.ogg", b"OggS" + b"\0" * 64, "audio/ogg")),
        ]
        assert (
            _error(
                client.post("/v1/enroll", data={"name": "alice"}, files=files), 422, "bad_audio"
            )["field"]
            == "files[1]"
        )
        # over the duration limit (8.4 s > 5 s), over the size limit (by header; streamed)
        _error(
            client.post("/v1/embed", files={"file": _upload(wildmix, A[1])}), 413, "audio_too_long"
        )
        big = {"file": ("big.wav", b"\0" * 400_000, "audio/wav")}
        _error(client.post("/v1/embed", files=big), 413, "upload_too_large")

        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b"\0" * 10_000

        streamed = client.post(
            "/v1/embed",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
        _error(streamed, 413, "upload_too_large")
        # bad fields
        _error(client.post("/v1/verify", files={"a": ok}), 422, "invalid_request")
        _error(
            client.post("/v1/verify", data={"operating_point": "nope"}, files={"a": ok, "b": ok}),
            422,
            "invalid_request",
        )
        _error(
            client.post("/v1/identify", data={"top_k": "0"}, files={"file": ok}),
            422,
            "invalid_request",
        )
        _error(
            client.post("/v1/enroll", data={"name": "a\x00b"}, files=[("files", ok)]),
            422,
            "invalid_request",
        )
        _error(client.get("/v1/nothing-here"), 404, "not_found")
        assert client.get("/v1/speakers").json() == before
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_unexpected_error_is_a_json_500_and_the_server_goes_on(
    model: SpeakerModel, wildmix: Path, tmp_path: Path
) -> None:
    app = create_app(ServiceConfig(store=tmp_path / "s.sqlite", auth=False), model=model)
    shared = app.state.worker.model

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    shared.verify = broken  # an instance attribute shadows the method for this app only
    with TestClient(app, raise_server_exceptions=False) as client:
        pair = {"a": _upload(wildmix, A[0]), "b": _upload(wildmix, A[2])}
        body = _error(client.post("/v1/verify", files=pair), 500, "internal_error")
        assert "RuntimeError" in str(body["message"]) and "boom" not in str(body["message"])
        assert client.get("/v1/speakers").json() == {"speakers": []}


def test_diarize_names_enrolled_speakers(
    model: SpeakerModel, wildmix: Path, tmp_path: Path
) -> None:
    """A 3-turn meeting (A, B, A) from wildmix files: two unknown speakers, then named."""
    wav = tmp_path / "meeting.wav"
    parts = [load_audio(wildmix / "wav" / f) for f in (A[1], B[1], A[2])]
    sf.write(wav, np.concatenate(parts), 16000, "PCM_16")
    b_start, b_end = len(parts[0]) / 16000, (len(parts[0]) + len(parts[1])) / 16000
    meeting = {"file": ("meeting.wav", wav.read_bytes(), "audio/wav")}
    with _client(model, tmp_path / "s.sqlite", auth=False, max_diarize_seconds=60.0) as client:
        r = client.post("/v1/diarize", files=meeting)
        assert r.status_code == 200, r.text
        assert [s["label"] for s in r.json()["speakers"]] == ["unknown-1", "unknown-2"]
        for name, files in (("Alice", A[:1]), ("bob", B[:1])):
            upload = [("files", _upload(wildmix, f)) for f in files]
            enrolled = client.post("/v1/enroll", data={"name": name}, files=upload)
            assert enrolled.status_code == 200
        d = client.post("/v1/diarize", data={"num_speakers": "2"}, files=meeting).json()
        assert [s["label"] for s in d["speakers"]] == ["Alice", "bob"]
        assert all(s["enrolled"] for s in d["speakers"]) and d["operating_point"] == "eer"
        for t in d["turns"]:  # every turn is given to the right speaker (0.5 s tolerance)
            mid = (t["start"] + t["end"]) / 2
            if b_start + 0.5 < mid < b_end - 0.5:
                assert t["speaker"] == "bob", t
            elif mid < b_start - 0.5 or mid > b_end + 0.5:
                assert t["speaker"] == "Alice", t
        _error(client.post("/v1/diarize", data={"num_speakers": "0"}, files=meeting),
               422, "invalid_request")  # fmt: skip
    with _client(model, tmp_path / "s.sqlite", auth=False, max_diarize_seconds=10.0) as client:
        _error(client.post("/v1/diarize", files=meeting), 413, "audio_too_long")


# ---------------------------------------------------------------- a real uvicorn process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wildvox.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_real_uvicorn_process(wildmix: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    store = ("--store", str(tmp_path / "s.sqlite"))
    refused = _cli("serve", "--no-auth", "--host", "0.0.0.0", env=env)
    assert refused.returncode == 2 and "--no-auth is allowed only on" in refused.stderr
    added = _cli("serve", "keys", "add", "pytest", *store, env=env)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    listed = _cli("serve", "keys", "list", "--json", *store, env=env)
    (row,) = json.loads(listed.stdout)
    assert row["label"] == "pytest" and key.split("_", 2)[2] not in listed.stdout
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wildvox.cli.main", "serve", "--port", str(port), *store],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        auth = {"X-API-Key": key}
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            r = client.post(
                "/v1/enroll",
                data={"name": "alice"},
                files=[("files", _upload(wildmix, f)) for f in A[:2]],
            )
            assert r.status_code == 200, r.text

            def identify(_: int) -> httpx.Response:
                return client.post("/v1/identify", files={"file": _upload(wildmix, A[2])})

            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(identify, range(8)))
            assert all(a.status_code == 200 and a.json()["speaker"] == "alice" for a in answers)
            assert (
                client.get("/v1/speakers", headers={"X-API-Key": "wvx_00000000_x"}).status_code
                == 401
            )
            revoked = _cli("serve", "keys", "revoke", row["key_id"], *store, env=env)
            assert revoked.returncode == 0, revoked.stderr
            _error(client.get("/v1/speakers"), 401, "unauthorized")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
