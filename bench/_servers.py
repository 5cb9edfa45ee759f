"""Servers in their own processes, for benchmarks that must not share the
client's interpreter (and its GIL): moto, and a LatencyProxy in front of it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

PROXY = """
import sys, time
from asteps.testing import LatencyProxy
with LatencyProxy(sys.argv[1], latency=float(sys.argv[2])) as proxy:
    print(proxy.endpoint_url, flush=True)
    while True:
        time.sleep(3600)
"""


SERIAL_MOTO = """
import sys, time
from asteps.testing import moto_server
with moto_server(serial=True) as server:
    print(server.endpoint_url, flush=True)
    while True:
        time.sleep(3600)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def moto_process() -> Iterator[str]:
    """moto's server in a child process; yields its endpoint URL."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("moto did not start")
        yield url
    finally:
        child.terminate()
        child.wait()


@contextmanager
def _child_url(code: str, *args: str) -> Iterator[str]:
    """Run ``code`` in a child process that prints its URL on its first line;
    yield that URL, and stop the child after the block."""
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        child.terminate()
        child.wait()


def serial_moto_process() -> AbstractContextManager[str]:
    """moto in a child process, answering one request at a time (its
    conditional writes then atomic, as S3's are); yields its endpoint URL."""
    return _child_url(SERIAL_MOTO)


def proxy_process(target: str, latency: float) -> AbstractContextManager[str]:
    """A LatencyProxy in a child process in front of ``target``; yields its URL."""
    return _child_url(PROXY, target, str(latency))
