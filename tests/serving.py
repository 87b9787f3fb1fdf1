"""An ``edgebert serve`` app on a loopback port in a thread of the test process, for the server tests."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx

READY_TIMEOUT_S = 120  # loading includes the kernel warm-up (cached on disk after the first run)


class ThreadServer:
    """``with ThreadServer(specs, limits, api_key) as s: httpx.get(s.url + "/health")``."""

    def __init__(self, specs, limits=None, api_key=None, threads=1):
        import uvicorn

        from edgebert.server.app import create_app
        from edgebert.server.config import Limits

        self.app = create_app(specs, limits or Limits(), api_key, threads)
        self.state = self.app.state.server
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self):
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self.sock])

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.state.status == "failed":
                break
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"server did not become ready: {self.state.status} {self.state.error}")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    def submit(self, coro):
        """Run a coroutine on the server's event loop (e.g. a batcher job) -> concurrent Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def metric(self, name: str, **labels) -> float:
        """A sample's value from the server's registry (0 when absent)."""
        value = self.state.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value
