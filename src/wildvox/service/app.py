"""The HTTP service: ``create_app(config)`` -> a FastAPI app serving the model and its store.

Endpoints (JSON; uploads are ``multipart/form-data``): ``POST /v1/embed``, ``/v1/verify``,
``/v1/enroll``, ``/v1/identify``, ``/v1/diarize``; ``GET /v1/speakers``, ``GET``/``DELETE
/v1/speakers/{name}``; ``GET /healthz``; the web page at ``/``; OpenAPI docs at ``/docs``.

Concurrency: the model is loaded once. Uploads are decoded (soundfile + soxr) in the request
threads, in parallel; everything that touches the model or the speaker store runs in one
worker thread, which owns the store's SQLite connection (SQLite connections stay in the
thread that opened them) and serialises the torch/ONNX calls. Writes go through the store's
own transactions only, so a CLI enrolling into the same store meanwhile is safe.

Every error is a 4xx (or 5xx for a broken model or store) with the body
``{"error": {"code": ..., "message": ...}}``: ``unauthorized`` (401), ``upload_too_large`` and
``audio_too_long`` (413), ``bad_audio`` (422, with the form ``field``), ``invalid_request``
(422), ``unknown_speaker`` (404), ``no_speakers`` and ``speaker_conflict`` (409).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import FastAPI, File, Form, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from wildvox.api import SpeakerModel, load_model
from wildvox.audio.io import AudioError, audio_info, load_audio
from wildvox.diarize import diarize
from wildvox.inference.model_io import ModelFileError
from wildvox.scoring.calibration import NAMED_POINTS
from wildvox.service.guard import API_KEY_HEADER, Guard, error_body
from wildvox.service.keys import ApiKeys, keys_path
from wildvox.store import SpeakerConflict, StoreError, UnknownSpeaker, check_top_k

__all__ = ["ServiceConfig", "ServiceError", "create_app"]

logger = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
#: upload name suffixes kept on the temporary file (libsndfile sniffs the format anyway).
SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".oga", ".mp3")
T = TypeVar("T")
#: the form fields of the endpoints (module level: FastAPI resolves annotations here).
Upload = Annotated[UploadFile, File(description="A recording: WAV, FLAC, Ogg/Opus, MP3.")]
Point = Annotated[str, Form(description=f"Operating point: {', '.join(NAMED_POINTS)}, "
                            "far=X%, frr=X%.")]  # fmt: skip


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs. ``store`` None: the model's default store
    (``$WILDVOX_STORE``); ``auth`` False serves without API keys (local use only)."""

    model: Path | None = None
    store: Path | None = None
    auth: bool = True
    max_upload_bytes: int = 25 * 2**20  # one request's body
    max_seconds: float = 120.0  # one recording
    max_diarize_seconds: float = 1800.0  # one recording to diarize (decoded block by block)
    max_files: int = 20  # recordings in one enroll request
    threads: int = 1  # CPU threads of the embedder

    def __post_init__(self) -> None:
        if (self.max_upload_bytes < 1 or not self.max_seconds > 0 or self.max_files < 1
                or not self.max_diarize_seconds > 0):  # fmt: skip
            raise ValueError("the upload, duration and file limits must be positive")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


class ServiceError(Exception):
    """An error answered as ``status`` with the JSON error body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def _answer(exc: Exception) -> ServiceError:
    """The HTTP answer for an exception of the library (``ServiceError`` passes through)."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, AudioError):
        return ServiceError(422, "bad_audio", exc.reason)
    if isinstance(exc, UnknownSpeaker):
        return ServiceError(404, "unknown_speaker", exc.problem, name=exc.name)
    if isinstance(exc, SpeakerConflict):
        return ServiceError(409, "speaker_conflict", exc.problem)
    if isinstance(exc, StoreError):
        return ServiceError(503, "store_error", exc.problem)
    if isinstance(exc, ModelFileError):
        return ServiceError(500, "model_error", str(exc))
    if isinstance(exc, ValueError | TypeError):
        return ServiceError(422, "invalid_request", str(exc))
    raise exc


class ModelWorker:
    """The model and its store, used from one thread only (see the module docstring)."""

    def __init__(self, model: SpeakerModel) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wildvox-model")

    async def run(self, fn: Callable[[SpeakerModel], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn, self.model))

    def close(self) -> None:
        self._executor.submit(self.model.close).result()
        self._executor.shutdown()


def _shared_model(config: ServiceConfig, model: SpeakerModel | None) -> SpeakerModel:
    """The app's own view of the model: weights, cohort and calibration shared with
    ``model`` (when given: tests load it once), its own store connection and limits."""
    base = model if model is not None else load_model(config.model, store=config.store)
    view = dataclasses.replace(base, _store=None, max_seconds=config.max_seconds)
    if config.store is not None:
        view.store_path = config.store
    view.set_threads(config.threads)
    return view


@contextlib.contextmanager
def _upload_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="wildvox-upload-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _save(upload: UploadFile, field: str, folder: Path, max_seconds: float) -> Path:
    """Write one upload to ``folder`` and check its header: readable audio of at most
    ``max_seconds``. Runs in a request thread."""
    name = upload.filename or field
    suffix = Path(name).suffix.lower()
    path = folder / f"{field}{suffix if suffix in SUFFIXES else '.bin'}"
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out)
    try:
        seconds = audio_info(path).duration
    except AudioError as exc:
        raise ServiceError(422, "bad_audio", exc.reason, field=field, filename=name) from None
    if seconds > max_seconds:
        raise ServiceError(413, "audio_too_long",
                           f"{seconds:.1f} s is over the limit of {max_seconds:g} s per "
                           "recording", field=field, filename=name)  # fmt: skip
    return path


def _decode(upload: UploadFile, field: str, folder: Path, rate: int, cfg: ServiceConfig,
            min_seconds: float) -> np.ndarray:  # fmt: skip
    """One uploaded recording -> float32 mono at ``rate``; runs in a request thread."""
    path = _save(upload, field, folder, cfg.max_seconds)
    try:
        return load_audio(path, sample_rate=rate, min_duration=min_seconds)
    except AudioError as exc:
        name = upload.filename or field
        raise ServiceError(422, "bad_audio", exc.reason, field=field, filename=name) from None
    finally:
        path.unlink(missing_ok=True)


def _speakers_payload(model: SpeakerModel) -> dict[str, Any]:
    return {"speakers": [asdict(r) for r in model.store().list_speakers()]}


def create_app(config: ServiceConfig | None = None, model: SpeakerModel | None = None) -> FastAPI:
    """The service app. ``model``: an already loaded model to share (else ``config.model`` is
    loaded). Raises ``ValueError`` when auth is on and the store's folder has no API key."""
    cfg = config or ServiceConfig()
    shared = _shared_model(cfg, model)
    keys = ApiKeys(keys_path(shared.store_path)) if cfg.auth else None
    if keys is not None and len(keys) == 0:
        raise ValueError(
            f"no API keys in {keys.path}: add one with `wildvox serve keys add LABEL` "
            "(or serve on 127.0.0.1 with --no-auth)"
        )
    worker = ModelWorker(shared)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(worker.close)

    app = FastAPI(
        title="wildvox",
        summary="Speaker verification, enrollment and identification",
        version="1",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.add_middleware(Guard, keys=keys, max_bytes=cfg.max_upload_bytes)
    # The Guard middleware checks the key before any body is read; declaring the scheme here
    # documents it in OpenAPI (the docs' "Authorize" button).
    scheme = [Security(APIKeyHeader(name=API_KEY_HEADER, auto_error=False))] if keys else []
    rate, min_seconds = shared.sample_rate, shared.min_seconds

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        body = error_body("invalid_request", "; ".join(problems) or "invalid request")
        return JSONResponse(body, 422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        body = error_body("internal_error", f"unexpected {type(exc).__name__}; see the server log")
        return JSONResponse(body, 500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code)

    async def run(fn: Callable[[SpeakerModel], T]) -> T:
        try:
            return await worker.run(fn)
        except Exception as exc:
            raise _answer(exc) from exc

    async def decode(uploads: list[tuple[str, UploadFile]]) -> list[np.ndarray]:
        with _upload_dir() as folder:
            return [
                await run_in_threadpool(_decode, up, field, folder, rate, cfg, min_seconds)
                for field, up in uploads
            ]

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness and what this server runs: model, scoring, limits, whether keys are needed."""
        return {
            "status": "ok",
            "model_id": shared.model_id,
            "backend": shared.backend,
            "scoring": shared.scoring,
            "sample_rate": rate,
            "auth": keys is not None,
            "operating_points": list(NAMED_POINTS),
            "max_upload_bytes": cfg.max_upload_bytes,
            "max_seconds": cfg.max_seconds,
            "max_files": cfg.max_files,
            "max_diarize_seconds": cfg.max_diarize_seconds,
        }

    @app.post("/v1/embed", tags=["recognition"], dependencies=scheme)
    async def embed(file: Upload) -> dict[str, Any]:
        """The recording's embedding (D floats), duration and seconds of speech found."""
        (wave,) = await decode([("file", file)])
        e = await run(lambda m: m.analyse(wave, rate))
        return {
            "embedding": e.embedding.tolist(),
            "dim": int(e.embedding.shape[0]),
            "duration": e.duration,
            "speech": e.speech,
            "model_id": shared.model_id,
        }

    @app.post("/v1/verify", tags=["recognition"], dependencies=scheme)
    async def verify(a: Upload, b: Upload, operating_point: Point = "eer") -> dict[str, Any]:
        """Same speaker? Score, calibrated LLR, and the decision at the operating point."""
        wa, wb = await decode([("a", a), ("b", b)])
        v = await run(lambda m: m.verify(wa, wb, operating_point, sample_rate=rate))
        return asdict(v)

    @app.post("/v1/enroll", tags=["speakers"], dependencies=scheme)
    async def enroll(
        name: Annotated[str, Form(description="Speaker name (unique regardless of case).")],
        files: Annotated[list[UploadFile], File(description="One or more recordings.")],
    ) -> dict[str, Any]:
        """Add recordings to a speaker (created if new); nothing is written if one is bad."""
        if len(files) > cfg.max_files:
            message = f"{len(files)} recordings; at most {cfg.max_files} per request"
            raise ServiceError(413, "too_many_files", message)
        waves = await decode([(f"files[{i}]", f) for i, f in enumerate(files)])

        def work(m: SpeakerModel) -> dict[str, Any]:
            m.enroll(name, waves, sample_rate=rate)
            return asdict(m.store().get(name))

        return await run(work)

    @app.post("/v1/identify", tags=["recognition"], dependencies=scheme)
    async def identify(
        file: Upload,
        top_k: Annotated[int, Form(description="Candidates returned.")] = 5,
        operating_point: Point = "eer",
    ) -> dict[str, Any]:
        """The enrolled speakers closest to the recording; ``speaker`` is null when the best
        one does not pass the operating point (an unknown speaker)."""
        check = await run(lambda m: (check_top_k(top_k), len(m.store()))[1])
        if check == 0:
            raise ServiceError(409, "no_speakers", "no enrolled speakers; enroll some first")
        (wave,) = await decode([("file", file)])
        ident = await run(lambda m: m.identify(wave, top_k, operating_point, sample_rate=rate))
        return asdict(ident)

    @app.post("/v1/diarize", tags=["recognition"], dependencies=scheme)
    async def diarize_recording(
        file: Upload,
        num_speakers: Annotated[
            int | None, Form(description="Speakers in the recording (else estimated).", ge=1)
        ] = None,
        operating_point: Point = "eer",
    ) -> dict[str, Any]:
        """Who spoke when: turns (seconds) and one entry per speaker, clusters named after
        enrolled speakers that pass the identification operating point, else ``unknown-N``.
        Recordings up to ``max_diarize_seconds``, decoded block by block."""
        with _upload_dir() as folder:
            path = await run_in_threadpool(_save, file, "file", folder, cfg.max_diarize_seconds)

            def work(m: SpeakerModel) -> dict[str, Any]:
                if m.store_path.exists():
                    m.store()  # opened here, so the longer-limit view below shares it
                longer = dataclasses.replace(m, max_seconds=cfg.max_diarize_seconds)
                try:
                    return diarize(longer, path, num_speakers, operating_point).to_json()
                except AudioError as exc:
                    name = file.filename or "file"
                    raise ServiceError(422, "bad_audio", exc.reason, field="file",
                                       filename=name) from None  # fmt: skip

            return await run(work)

    @app.get("/v1/speakers", tags=["speakers"], dependencies=scheme)
    async def list_speakers() -> dict[str, Any]:
        """Every enrolled speaker: name, utterances, seconds enrolled, times (Unix seconds)."""
        return await run(_speakers_payload)

    @app.get("/v1/speakers/{name:path}", tags=["speakers"], dependencies=scheme)
    async def show_speaker(name: str) -> dict[str, Any]:
        """One enrolled speaker (404 ``unknown_speaker`` when not enrolled)."""
        return await run(lambda m: asdict(m.store().get(name)))

    @app.delete("/v1/speakers/{name:path}", tags=["speakers"], dependencies=scheme)
    async def delete_speaker(name: str) -> dict[str, Any]:
        """Remove a speaker and its recordings' embeddings; returns what was removed."""
        return {"removed": await run(lambda m: asdict(m.store().remove(name)))}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
