"""Benchmark: ``wildvox serve`` under load (issue #16.3).

Starts one real uvicorn process (``wildvox serve`` on 127.0.0.1, a free port, an API key made
for the run, a fresh store in a temporary folder), enrolls ``--speakers`` wildmix test speakers
(2 recordings each) through ``/v1/enroll``, then runs ``--clients`` concurrent clients (threads,
one ``httpx.Client`` each) for ``--seconds``, each alternating ``/v1/verify`` (a pair of
veri_test files) and ``/v1/identify`` (a held-out recording of an enrolled speaker). Reports
throughput, p50/p99 latency per endpoint and the status codes (goal: zero 5xx). Then checks
that an oversize upload gets 413, a non-audio upload 422, a wrong and a missing key 401, that
the store lists the same speakers as before the load (and passes SQLite's integrity check),
and that the server stops cleanly with no traceback in its log.

Writes ``<out>/service.json`` and ``<out>/service.md``.

    .venv/bin/python bench/service.py                      # 4 clients, 30 s
    .venv/bin/python bench/service.py --clients 8 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from wildvox.service.keys import ApiKeys, keys_path  # noqa: E402

MAX_UPLOAD_MB = 4.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("WILDVOX_DATA",
                        REPO.parent / "shared" / "corpora" / "wildmix")))  # fmt: skip
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--speakers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="the server's embedder threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    return parser.parse_args()


def pick_files(data: Path, speakers: int, rng: random.Random) -> dict[str, Any]:
    """Enrolment files (2 per speaker), held-out identify queries, and verify pairs, from the
    veri_test list, recordings of 2-12 s only (bounded request cost)."""
    lines = (data / "veri_test.txt").read_text().split("\n")
    trials = [ln.split() for ln in lines if ln.strip()]
    by_speaker: dict[str, set[str]] = {}
    for _, a, b in trials:
        for f in (a, b):
            by_speaker.setdefault(f.split("/")[0], set()).add(f)

    def ok(f: str) -> bool:
        return 2.0 <= sf.info(str(data / "wav" / f)).duration <= 12.0

    chosen = rng.sample(sorted(by_speaker), speakers)
    enroll, queries = {}, []
    for spk in chosen:
        files = [f for f in sorted(by_speaker[spk]) if ok(f)][:4]
        enroll[spk], queries = files[:2], [*queries, *((spk, f) for f in files[2:])]
    pairs = [(a, b, int(t)) for t, a, b in rng.sample(trials, 200)]
    pairs = [p for p in pairs if ok(p[0]) and ok(p[1])][:40]
    return {"enroll": enroll, "queries": queries, "pairs": pairs}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def main() -> None:
    args = parse_args()
    rng = random.Random(args.seed)
    files = pick_files(args.data, args.speakers, rng)
    needed = {f for v in files["enroll"].values() for f in v} | {f for _, f in files["queries"]}
    needed |= {f for a, b, _ in files["pairs"] for f in (a, b)}
    audio = {f: (args.data / "wav" / f).read_bytes() for f in needed}

    def up(f: str) -> tuple[str, bytes, str]:
        return Path(f).name, audio[f], "audio/ogg"

    tmp = Path(tempfile.mkdtemp(prefix="wildvox-bench-service-"))
    store = tmp / "speakers.sqlite"
    key, _ = ApiKeys(keys_path(store)).add("bench")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO / "src")}
    log = (tmp / "server.log").open("w")
    cmd = [sys.executable, "-m", "wildvox.cli.main", "serve", "--host", "127.0.0.1", "--port",
           str(port), "--store", str(store), "--threads", str(args.threads),
           "--max-upload-mb", str(MAX_UPLOAD_MB)]  # fmt: skip
    started = time.monotonic()
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    auth = {"X-API-Key": key}
    try:
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() - started > 120:
                raise SystemExit(f"server did not start; see {tmp / 'server.log'}")
            time.sleep(0.2)
        startup = time.monotonic() - started
        with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
            for spk, fs in files["enroll"].items():
                r = client.post("/v1/enroll", data={"name": spk},
                                files=[("files", up(f)) for f in fs])  # fmt: skip
                r.raise_for_status()
            before = client.get("/v1/speakers").json()["speakers"]

        # ------------------------------------------------------------ load
        records: list[tuple[str, int, float, bool | None]] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def worker(k: int) -> None:
            local = random.Random(args.seed * 1000 + k)
            with httpx.Client(base_url=base, headers=auth, timeout=120) as c:
                i = k
                while time.monotonic() < stop_at:
                    try:
                        rec = one_request(c, local, i)
                    except httpx.TransportError:  # counted as a failure (status 0)
                        rec = ("verify" if i % 2 == 0 else "identify", 0, float("nan"), None)
                    with lock:
                        records.append(rec)
                    i += 1

        def one_request(
            c: httpx.Client, local: random.Random, i: int
        ) -> tuple[str, int, float, bool | None]:
            if i % 2 == 0:
                a, b, _ = local.choice(files["pairs"])
                t0 = time.perf_counter()
                r = c.post("/v1/verify", files={"a": up(a), "b": up(b)})
                return ("verify", r.status_code, time.perf_counter() - t0, None)
            spk, q = local.choice(files["queries"])
            t0 = time.perf_counter()
            r = c.post("/v1/identify", files={"file": up(q)})
            right = r.status_code == 200 and r.json()["speaker"] == spk
            return ("identify", r.status_code, time.perf_counter() - t0, right)

        load_before = os.getloadavg()[0]
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        load_after = os.getloadavg()[0]

        # ------------------------------------------------------------ refusals
        with httpx.Client(base_url=base, timeout=60) as c:
            a0 = files["pairs"][0][0]
            big = ("big.wav", os.urandom(int((MAX_UPLOAD_MB + 1) * 2**20)), "audio/wav")
            checks = {
                "oversize upload": (c.post("/v1/identify", headers=auth, files={"file": big}), 413),
                "non-audio upload": (c.post("/v1/verify", headers=auth, files={
                    "a": up(a0), "b": ("notes.wav", b"not audio " * 100, "audio/wav")}), 422),
                "wrong key": (c.post("/v1/identify", headers={"X-API-Key": key + "x"},
                                     files={"file": up(a0)}), 401),
                "missing key": (c.get("/v1/speakers"), 401),
            }  # fmt: skip
            refusals = {name: {"status": r.status_code, "expected": want,
                               "code": r.json().get("error", {}).get("code")}
                        for name, (r, want) in checks.items()}  # fmt: skip
            after = c.get("/v1/speakers", headers=auth).json()["speakers"]
        rss_mb = None
        status_file = Path(f"/proc/{server.pid}/status")
        if status_file.is_file():
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss_mb = int(line.split()[1]) / 1024
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        log.close()
    server_log = (tmp / "server.log").read_text()
    with sqlite3.connect(store) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]

    endpoints: dict[str, Any] = {}
    for ep in ("verify", "identify"):
        rows = [r for r in records if r[0] == ep]
        lat = [r[2] for r in rows if r[1] == 200]
        endpoints[ep] = {
            "requests": len(rows),
            "per_second": len(rows) / elapsed,
            "p50_ms": 1000 * percentile(lat, 50),
            "p99_ms": 1000 * percentile(lat, 99),
            "max_ms": 1000 * max(lat) if lat else float("nan"),
            "statuses": dict(Counter(str(r[1]) for r in rows)),
        }
    idents = [r[3] for r in records if r[0] == "identify" and r[1] == 200]
    keys_of = ("name", "num_utterances", "total_duration")
    intact = [{k: s[k] for k in keys_of} for s in before] == [
        {k: s[k] for k in keys_of} for s in after
    ]
    result = {
        "command": " ".join(["python bench/service.py", *sys.argv[1:]]),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": [load_before, load_after],  # before / after the load phase
        },
        "config": {
            "clients": args.clients,
            "seconds": args.seconds,
            "speakers": args.speakers,
            "server_threads": args.threads,
            "seed": args.seed,
            "max_upload_mb": MAX_UPLOAD_MB,
            "verify_pairs": len(files["pairs"]),
            "identify_queries": len(files["queries"]),
        },
        "server_startup_s": startup,
        "load_seconds": elapsed,
        "total_per_second": len(records) / elapsed,
        "endpoints": endpoints,
        "server_errors_5xx": sum(1 for r in records if r[1] >= 500),
        "transport_errors": sum(1 for r in records if r[1] == 0),
        "identify_named_right": sum(bool(x) for x in idents) / len(idents) if idents else None,
        "refusals": refusals,
        "store_intact": intact and integrity == "ok",
        "store_speakers": len(after),
        "server_peak_rss_mb": rss_mb,
        "server_exit_code": server.returncode,
        "server_log_tracebacks": server_log.count("Traceback"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "service.md").write_text(render(result))
    print(render(result))
    ok = (result["server_errors_5xx"] == 0 == result["transport_errors"] and result["store_intact"]
          and all(r["status"] == r["expected"] for r in refusals.values()))  # fmt: skip
    raise SystemExit(0 if ok else 1)


def render(r: dict[str, Any]) -> str:
    cfg = r["config"]
    lines = [
        "# wildvox serve under load",
        "",
        f"Command: `{r['command']}` ({r['machine']['cpu']}, {r['machine']['cores']} cores, "
        f"Python {r['machine']['python']}; 1-minute load average "
        f"{r['machine']['load_average_1min'][0]:.1f} before / "
        f"{r['machine']['load_average_1min'][1]:.1f} after the load phase, on a machine shared "
        "with other jobs). One uvicorn process on 127.0.0.1 with an API key; "
        f"{cfg['clients']} concurrent clients (threads, httpx) for {cfg['seconds']:g} s, each "
        f"alternating /v1/verify ({cfg['verify_pairs']} veri_test pairs) and /v1/identify "
        f"({cfg['identify_queries']} held-out recordings of the {cfg['speakers']} enrolled "
        f"speakers); recordings of 2-12 s (Ogg/Opus); server embedder on "
        f"{cfg['server_threads']} thread(s); seed {cfg['seed']}. The server decodes uploads in "
        "parallel and runs the model in one worker thread, so under load a request waits for "
        "those ahead of it: its latency is about the number of clients times the service time.",
        "",
        "| endpoint | requests | per second | p50 (ms) | p99 (ms) | max (ms) | statuses |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for ep, e in r["endpoints"].items():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(e["statuses"].items()))
        lines.append(
            f"| /v1/{ep} | {e['requests']} | {e['per_second']:.2f} | {e['p50_ms']:.0f} | "
            f"{e['p99_ms']:.0f} | {e['max_ms']:.0f} | {statuses} |"
        )
    named = r["identify_named_right"]
    lines += [
        "",
        f"Total {r['total_per_second']:.2f} requests/s over {r['load_seconds']:.1f} s; "
        f"**{r['server_errors_5xx']} server errors (5xx)**, {r['transport_errors']} transport "
        "errors. Identify named the true speaker in "
        f"{100 * named:.1f} % of its answers."
        if named is not None
        else "",
        "",
        "| refusal | status | expected | error code |",
        "|---|---:|---:|---|",
    ]
    for name, x in r["refusals"].items():
        lines.append(f"| {name} | {x['status']} | {x['expected']} | {x['code']} |")
    lines += [
        "",
        f"Store after the run: {r['store_speakers']} speakers, same as before the load and "
        f"SQLite integrity check ok: **{r['store_intact']}**. Server: started in "
        f"{r['server_startup_s']:.1f} s, peak RSS {r['server_peak_rss_mb'] or float('nan'):.0f} "
        f"MB, exit code {r['server_exit_code']} on SIGINT, {r['server_log_tracebacks']} "
        "tracebacks in its log.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
