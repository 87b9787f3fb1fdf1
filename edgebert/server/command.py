"""``edgebert serve MODEL [MODEL ...]``: the flags (one per ``Limits`` field) and the process."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading

from ..errors import InputError
from .config import LOOPBACK, Limits, default_threads

API_KEY_ENV = "EDGEBERT_API_KEY"
MAX_CONNECTIONS = 1024  # open connections and tasks; uvicorn answers 503 past it (the queues bound the work)
FLAG_HELP = {
    "max_body_bytes": "largest request body (413 above)",
    "max_inputs": "most texts in one request (413 above)",
    "max_request_tokens": "most tokens in one request (413 above)",
    "max_batch_tokens": "concurrent requests are gathered into one batch up to this many tokens",
    "batch_wait_ms": "how long an idle model waits for more requests to gather",
    "max_queue": "requests waiting per model before new ones get 429",
    "timeout_s": "seconds before an unanswered request gets 503 and its queued work is dropped",
    "read_timeout_s": "seconds to receive a request body (408 after)",
    "batch_size": "texts per forward pass inside a batch",
}


def add_serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve models over HTTP (OpenAI- and TEI-compatible; needs edgebert[serve])")
    s.add_argument("models", nargs="+", metavar="MODEL",
                   help="a .edgebert file, or NAME=PATH (default name: the file name without its extension)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port)")
    s.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                   help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV}, "
                        "which keeps the key out of the process list)")
    s.add_argument("--threads", type=int, default=None,
                   help="kernel threads (default: $EDGEBERT_NUM_THREADS, else every core but one)")
    for f in dataclasses.fields(Limits):
        flag = "--" + f.name.removesuffix("_s").replace("_", "-")
        s.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                       help=f"{FLAG_HELP[f.name]} (default {f.default})")
    s.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn  # noqa: F401
        import starlette  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as e:
        raise InputError(f"edgebert serve needs the serve extra ({e.name} is missing): "
                         "pip install 'edgebert[serve]'") from None
    from .app import create_app
    from .models import parse_specs

    limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    for f in dataclasses.fields(Limits):
        value = getattr(limits, f.name)
        if value < 0 or (value == 0 and f.name != "batch_wait_ms"):
            raise InputError(f"--{f.name.removesuffix('_s').replace('_', '-')} must be positive, got {value}")
    specs = parse_specs(args.models)
    threads = default_threads() if args.threads is None else args.threads
    sock = _bind(args.host, args.port)
    app = create_app(specs, limits, args.api_key, threads, on_fatal=lambda: _stop(server), on_ready=_announce)
    server = _server(app, limits)
    host, port = sock.getsockname()[:2]
    where = "loopback only: other machines cannot connect" if args.host in LOOPBACK else \
        "ALL machines that can reach this address can connect" + ("" if args.api_key else ", with no API key")
    print(f"edgebert: serving {', '.join(n for n, _ in specs)} on http://{_url_host(host)}:{port} ({where}); "
          f"{threads} kernel thread{'s' if threads > 1 else ''}; /health says when the models are ready",
          file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 1 if app.state.server.status == "failed" else 0


def _announce(state) -> None:
    print(f"edgebert: ready (kernels and models loaded in {state.ready_s:.1f} s), {resident_mib():.0f} MiB resident",
          file=sys.stderr, flush=True)


def resident_mib() -> float:
    """This process's resident memory now (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def _server(app, limits: Limits):
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """SIGTERM or Ctrl-C: stop accepting, answer what is in flight, then exit 0 (uvicorn's
            own would re-raise the signal after draining, so the process would die of it)."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=limits.timeout_s,
                            h11_max_incomplete_event_size=64 * 1024, limit_concurrency=MAX_CONNECTIONS)
    return Server(config)


def _stop(server) -> None:
    server.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

