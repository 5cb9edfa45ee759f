"""A TCP proxy on a loopback port that delays every HTTP request it forwards.

Put in front of a moto server, it gives S3 a real round-trip time, so that a
benchmark measures how a client behaves under latency, not how fast moto is
on loopback. It runs its own event loop in a daemon thread, so it adds no
task to the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

_READ = 65536


class LatencyProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` (``http://host:port``),
    holding back the first bytes of every request for ``latency`` seconds.

    A request is what the client sends after the connection opens or after
    the server has answered, so keep-alive connections are delayed once per
    request. (A body sent after ``100 Continue`` counts as a new request and
    is delayed again; S3 listings and reads have no body.) ``requests`` counts
    the delayed requests. Use as a context manager, or ``start()``/``close()``.
    """

    def __init__(self, target: str, *, latency: float = 0.02) -> None:
        parts = urlsplit(target)
        if not parts.hostname or not parts.port:
            raise ValueError(f"target must be http://host:port, got {target!r}")
        self.target = (parts.hostname, parts.port)
        self.latency = latency
        self.requests = 0
        self.endpoint_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def start(self) -> Self:
        """Start listening on a free loopback port; sets ``endpoint_url``.
        Raises what stopped it from listening (an ``OSError``), its thread ended."""
        self._thread = threading.Thread(
            target=self._serve, name="asteps latency proxy", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            self._thread.join()
            self._thread = None
            raise self._failed
        return self

    def close(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0)
            )
        except BaseException as exc:
            # Told to start(), which waits for this thread: it must not wait for ever.
            self._failed = exc
            loop.close()
            self._ready.set()
            return
        self._loop = loop
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        # asyncio keeps no reference to this task once the client has gone: keep
        # one, or the task is collected while it still forwards the last answer.
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        answered = asyncio.Event()  # the server spoke since the client last did
        answered.set()
        try:
            await asyncio.gather(
                self._requests(client_r, server_w, answered),
                self._responses(server_r, client_w, answered),
            )
        finally:
            for writer in (client_w, server_w):
                writer.close()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_READ):
                if answered.is_set():  # the first bytes of a new request
                    answered.clear()
                    self.requests += 1
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_READ):
                answered.set()
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()
