"""What every ``/v1/`` request passes before the app reads its body: the API key, then the
upload size (the ``Content-Length`` header, then the bytes actually received, so a chunked
upload cannot exceed it either). Errors are the service's JSON error body."""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wildvox.service.keys import ApiKeys

__all__ = ["API_KEY_HEADER", "Guard", "error_body"]

#: the request header that carries the API key.
API_KEY_HEADER = "X-API-Key"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The service's one error shape: ``{"error": {"code": ..., "message": ..., ...}}``."""
    return {"error": {"code": code, "message": message, **extra}}


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": API_KEY_HEADER} if status == 401 else None
    return JSONResponse(error_body(code, message, **extra), status, headers=headers)


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: ``keys`` None serves without keys (``--no-auth``)."""

    def __init__(self, app: ASGIApp, keys: ApiKeys | None, max_bytes: int) -> None:
        self.app = app
        self.keys = keys
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        mb = self.max_bytes / 2**20
        return _error(413, "upload_too_large", f"request body over the limit of {mb:g} MiB",
                      limit_bytes=self.max_bytes)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.keys is not None:
            key = headers.get(API_KEY_HEADER)
            if not key:
                message = f"missing API key: send it in the {API_KEY_HEADER} header"
                response = _error(401, "unauthorized", message)
                await response(scope, receive, send)
                return
            if await run_in_threadpool(self.keys.check, key) is None:
                response = _error(401, "unauthorized", "invalid or revoked API key")
                await response(scope, receive, send)
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large()(scope, receive, send)
            return
        received = 0
        answered = False

        async def counted() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not answered:
                    answered = True  # answer now; whatever the app sends afterwards is dropped
                    await self._too_large()(scope, receive, send)
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:
                await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counted, guarded_send)
