"""The ASGI app: routes, API key, JSON errors, metrics per request, models loaded in the background."""
from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
import traceback
from typing import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InputError
from . import routes
from .config import Limits
from .http import ApiError, ClientGone
from .metrics import Metrics
from .models import Registry, load_served
from .openapi import openapi

log = logging.getLogger("edgebert.serve")
CLIENT_GONE = 499  # recorded in the metrics for a client that left before its answer (nginx's code)


class State:
    """What every request sees: limits, metrics, the key, and the models once loaded."""

    def __init__(self, specs, limits: Limits, api_key: str | None, threads: int, on_fatal: Callable | None = None,
                 on_ready: Callable | None = None):
        self.specs, self.limits, self.threads = specs, limits, threads
        self.api_key = api_key.encode() if api_key else None
        self.metrics = Metrics()
        self.registry: Registry | None = None
        self.status, self.error = "loading", None
        self.started = time.time()
        self.ready_s: float | None = None
        self.on_fatal, self.on_ready = on_fatal or (lambda: None), on_ready or (lambda state: None)

    def load(self) -> None:
        """Compile (or load cached) kernels, then every model; a failure stops the server."""
        from ..warmup import warmup

        try:
            warmup(verbose=False)
            served = [load_served(name, path, self.threads, self.limits, self.metrics) for name, path in self.specs]
            self.registry = Registry(served)
            self.ready_s = time.time() - self.started
            self.status = "ready"
            self.on_ready(self)
        except Exception as e:  # noqa: BLE001 - whatever it is, say it and stop (not "loading" for ever)
            self.status, self.error = "failed", f"{type(e).__name__}: {e}"
            log.error("edgebert serve: cannot load the models: %s", self.error)
            self.on_fatal()

    def authorize(self, request) -> None:
        if self.api_key is None:
            return
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.api_key):
            raise ApiError(401, "a valid API key is required: send 'Authorization: Bearer KEY'")

    def require_ready(self) -> None:
        if self.status != "ready":
            raise ApiError(503, f"the server is {self.status}" + (f": {self.error}" if self.error else
                                                                  "; retry shortly"), retry_after=1)


def endpoint(handler, route: str, openai: bool = False, needs_models: bool = True, public: bool = False):
    """Runs a handler with the key check and readiness, maps every failure to a JSON error and
    counts the answer by status."""
    async def run(request):
        state: State = request.app.state.server
        start = time.perf_counter()
        try:
            if not public:
                state.authorize(request)
            if needs_models:
                state.require_ready()
            response = await handler(request, state)
        except ApiError as e:
            response = e.response(openai)
        except InputError as e:  # the library's own checks: a text too long, a wrong option
            response = ApiError(422, str(e)).response(openai)
        except ClientGone:
            response = Response(status_code=CLIENT_GONE)  # nobody reads it; counted as such
        except Exception:  # noqa: BLE001 - one request's bug must not take the server down
            log.error("edgebert serve: %s failed:\n%s", route, traceback.format_exc())
            response = ApiError(500, "internal error (the server's log has the details)").response(openai)
        state.metrics.requests.labels(route, str(response.status_code)).inc()
        state.metrics.request_seconds.labels(route).observe(time.perf_counter() - start)
        return response
    return run


async def health(request, state):
    body = {"status": state.status, "models": [n for n, _ in state.specs]}
    if state.error:
        body["error"] = state.error
    return JSONResponse(body, status_code=200 if state.status == "ready" else 503)


async def metrics(request, state):
    return Response(state.metrics.render(), media_type=state.metrics.content_type)


async def openapi_json(request, state):
    return JSONResponse(openapi())


ROUTES = (  # path, method, handler, OpenAI error shape, needs the models
    ("/v1/embeddings", "POST", routes.openai_embeddings, True, True),
    ("/v1/models", "GET", routes.openai_models, True, True),
    ("/embed", "POST", routes.tei_embed, False, True),
    ("/rerank", "POST", routes.tei_rerank, False, True),
    ("/predict", "POST", routes.tei_predict, False, True),
    ("/tokenize", "POST", routes.tei_tokenize, False, True),
    ("/info", "GET", routes.tei_info, False, True),
    ("/metrics", "GET", metrics, False, False),
    ("/openapi.json", "GET", openapi_json, False, False),
)


def create_app(specs: list, limits: Limits = Limits(), api_key: str | None = None, threads: int = 1,
               on_fatal: Callable | None = None, on_ready: Callable | None = None) -> Starlette:
    """The app for ``specs`` [(name, path)]; the models load on a thread once it starts
    (then ``on_ready(state)``; ``on_fatal()`` if they cannot)."""
    state = State(specs, limits, api_key, threads, on_fatal, on_ready)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loader = threading.Thread(target=state.load, name="edgebert-serve-load", daemon=True)
        loader.start()
        yield
        loader.join()
        if state.registry is not None:
            state.registry.close(limits.timeout_s)  # answer what is queued, then stop the threads

    async def http_error(request, exc: HTTPException):  # unknown path or method
        state.metrics.requests.labels("unmatched", str(exc.status_code)).inc()
        what = "no such route" if exc.status_code == 404 else exc.detail
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {what}").response(False)

    table = [Route(path, endpoint(fn, path, openai, ready), methods=[method])
             for path, method, fn, openai, ready in ROUTES]
    table.append(Route("/health", endpoint(health, "/health", needs_models=False, public=True), methods=["GET"]))
    app = Starlette(routes=table, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.server = state
    return app
