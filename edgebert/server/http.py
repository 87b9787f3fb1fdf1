"""Reading a request safely and turning every failure into a JSON error with a status code."""
from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import JSONResponse

from .batching import Closed, Overloaded

MAX_MESSAGE_CHARS = 600  # an error quoting a huge input is cut, not echoed back whole
RETRY_AFTER_S = 1


class ApiError(Exception):
    """An answer other than 200: ``status``, a message naming what is wrong, and a type."""

    TYPES = {400: "invalid_request", 401: "authentication_error", 404: "not_found", 408: "timeout",
             413: "payload_too_large", 422: "validation_error", 429: "overloaded", 500: "internal_error",
             503: "unavailable"}

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after

    def response(self, openai: bool) -> JSONResponse:
        """OpenAI's error shape on /v1 routes, text-embeddings-inference's elsewhere."""
        message = self.message if len(self.message) <= MAX_MESSAGE_CHARS else \
            self.message[:MAX_MESSAGE_CHARS] + f"... ({len(self.message)} characters)"
        kind = self.TYPES.get(self.status, "error")
        body = {"error": {"message": message, "type": kind, "code": self.status}} if openai else \
            {"error": message, "error_type": kind}
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(body, status_code=self.status, headers=headers)


async def read_json(request: Request, max_bytes: int, timeout_s: float):
    """The body as JSON: 413 past ``max_bytes`` (before reading it all), 408 if it takes longer
    than ``timeout_s``, 400 if it is not UTF-8, 422 if it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > max_bytes:
            raise ApiError(413, f"the request body has {int(declared)} bytes, more than the limit of "
                                f"{max_bytes} (--max-body-bytes)")
    parts: list[bytes] = []

    async def receive_all():
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ApiError(413, f"the request body is more than the limit of {max_bytes} bytes "
                                    f"(--max-body-bytes)")
            parts.append(chunk)

    try:
        await asyncio.wait_for(receive_all(), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout_s:g} s") from None
    raw = b"".join(parts)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the request body is not valid UTF-8 (byte {e.start}: {e.reason})") from None
    if not text.strip():
        raise ApiError(422, "the request body is empty; send a JSON object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(422, f"the request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") \
            from None
    except RecursionError:
        raise ApiError(422, "the request body is nested too deeply") from None


async def answer(request: Request, work, timeout_s: float):
    """Await ``work`` (a coroutine) unless the client disconnects (the work is cancelled and
    dropped if still queued) or ``timeout_s`` passes (503)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task in done:
        try:
            return task.result()
        except Overloaded as e:
            raise ApiError(429, str(e), retry_after=RETRY_AFTER_S) from None
        except Closed as e:
            raise ApiError(503, str(e), retry_after=RETRY_AFTER_S) from None
    task.cancel()
    if gone in done:
        raise ClientGone()
    raise ApiError(503, f"the request was not answered within {timeout_s:g} s (--timeout); "
                        "its queued work was dropped", retry_after=RETRY_AFTER_S)


class ClientGone(Exception):
    """The client disconnected before its answer was ready; nothing is sent."""


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
