"""An in-process moto server on a loopback port: the real S3 and SWF HTTP APIs
with no AWS account. Used by the test suite, ``asteps demo --s3``, the
examples and the benchmarks. Needs the ``moto[server]`` package."""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """A running moto server; ``endpoint_url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

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
def moto_server(*, set_credentials: bool = True) -> Iterator[MotoServer]:
    """Start moto on a free loopback port for the duration of the block.

    With ``set_credentials`` the process environment gets fake AWS
    credentials (only where none are set), so no real account is ever used.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "moto is not installed: pip install 'moto[server]' (or the 'test' extra)"
        ) from exc
    if set_credentials:
        for key, value in FAKE_CREDENTIALS.items():
            os.environ.setdefault(key, value)
    # werkzeug logs every request at INFO; a demo or benchmark drowns in it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoServer(f"http://{host}:{port}")
    finally:
        server.stop()
