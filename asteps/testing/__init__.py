"""Test harnesses for flows that use asteps (a documented public subpackage).

- :func:`moto_server`: moto's real S3 and SWF HTTP APIs on a loopback port,
  for the duration of a ``with`` block, and :class:`MotoServer` to reset it or
  make it enforce IAM. It touches no global state: clients get moto's fake
  credentials from :meth:`MotoServer.session`.
- :class:`LatencyStore`: a store that answers every call after a delay
  (constant or exponential), a bounded number at once, over a ``MemoryStore``:
  a remote store's behaviour without a network.
- :class:`LatencyProxy`: a TCP proxy on a loopback port that delays every HTTP
  request it forwards, to put real latency in front of a moto server.
"""

from ._moto import FAKE_CREDENTIALS, MotoServer, moto_server
from .latency import LatencyStore
from .proxy import LatencyProxy

__all__ = ["FAKE_CREDENTIALS", "LatencyProxy", "LatencyStore", "MotoServer", "moto_server"]
