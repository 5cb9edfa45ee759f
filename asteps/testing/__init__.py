"""Test harnesses for flows that use asteps (a documented public subpackage).

- :func:`moto_server`: moto's real S3 and SWF HTTP APIs on a loopback port,
  for the duration of a ``with`` block, and :class:`MotoServer` to reset it or
  make it enforce IAM. It touches no global state: clients get moto's fake
  credentials from :meth:`MotoServer.session`.
"""

from ._moto import FAKE_CREDENTIALS, MotoServer, moto_server

__all__ = ["FAKE_CREDENTIALS", "MotoServer", "moto_server"]
