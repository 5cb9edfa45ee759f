"""What the S3 store and the SWF bridge share about their aioboto3 clients."""

from __future__ import annotations

from typing import Any

from aiobotocore.config import AioConfig

DEFAULT_RETRIES = {"mode": "standard", "total_max_attempts": 5}
"""botocore's standard retry mode: throttling, 5xx and connection errors are
retried with backoff, up to 5 attempts in all."""


def client_config(override: AioConfig | None = None, **defaults: Any) -> AioConfig:
    """asteps' defaults (standard retries, plus ``defaults``), with the caller's
    ``override`` merged over them."""
    config = AioConfig(retries=DEFAULT_RETRIES, **defaults)
    return config.merge(override) if override else config
