"""An in-process moto server on a loopback port: the real S3 and SWF HTTP APIs
with no AWS account. Used by the test suite, ``asteps demo --s3``, the
examples and the benchmarks. Needs the ``moto[server]`` package."""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aioboto3

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""The credentials moto accepts, as environment variables (for tests that
set them with ``monkeypatch.setenv``; the harness itself never touches
``os.environ``)."""


class MotoServer:
    """A running moto server; ``endpoint_url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def session(self) -> aioboto3.Session:
        """An aioboto3 session with moto's fake credentials, so that no real
        account is ever used; pass it to ``S3Store``, the SWF bridge or listener."""
        import aioboto3

        return aioboto3.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def reset(self) -> None:
        """Forget every bucket, object, domain and execution."""
        self._post("reset", b"")

    def enforce_iam(self, enabled: bool = True) -> None:
        """Make moto check credentials and IAM policies on every request (or stop)."""
        self._post("reset-auth", b"0" if enabled else b"inf")

    def _post(self, path: str, data: bytes) -> None:
        url = f"{self.endpoint_url}/moto-api/{path}"
        # text/plain: with urllib's default form type, moto would see no body.
        request = urllib.request.Request(
            url, data, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextmanager
def moto_server(*, serial: bool = False) -> Iterator[MotoServer]:
    """Start moto on a free loopback port for the duration of the block,
    with nothing in it.

    moto keeps its buckets, domains and executions per process, shared by
    every server in it, and its IAM checks too: the block starts by
    forgetting them all (``reset``) with IAM not enforced, so that it never
    sees what an earlier block left. A block opened while another is in use
    empties that one too (and turns its IAM checks off).

    Clients reach it with ``endpoint_url=server.endpoint_url`` and
    ``session=server.session()``. werkzeug's log of every request is quieted
    (``WARNING``) for the block, and its level restored after it.

    With ``serial=True`` it answers one request at a time. moto checks a
    conditional write's condition (``If-None-Match``, ``If-Match``) and then
    writes, with no lock between the two: processes racing to create one key
    could, rarely, both succeed, which S3 never allows. Serial, its conditional
    writes are atomic, as S3's are: use it where processes race for claims.
    """
    # werkzeug logs every request at INFO; a demo or benchmark drowns in it.
    # Quieted for the block only: the logger is the caller's again after it.
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    try:
        server: ThreadedServer = _SerialServer() if serial else _threaded_moto_server()
        server.start()
        try:
            host, port = server.get_host_and_port()
            started = MotoServer(f"http://{host}:{port}")
            started.reset()
            started.enforce_iam(False)  # per process too, and reset leaves it as it was
            yield started
        finally:
            server.stop()
    finally:
        werkzeug.setLevel(level)


class ThreadedServer(Protocol):
    def start(self) -> None: ...
    def get_host_and_port(self) -> tuple[str, int]: ...
    def stop(self) -> None: ...


def _threaded_moto_server() -> ThreadedServer:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "moto is not installed: pip install 'moto[server]' (or the 'test' extra)"
        ) from exc
    server: ThreadedServer = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    return server


class _SerialServer:
    """moto's own WSGI application (the one ThreadedMotoServer serves), served
    by werkzeug on a loopback port with one request at a time let through."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _Serial(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="asteps serial moto", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


class _Serial:
    """A WSGI app that lets one request at a time through to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))
