"""What the S3 store and the SWF bridge share about their aioboto3 clients."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

DEFAULT_RETRIES = {"mode": "standard", "total_max_attempts": 5}
"""botocore's standard retry mode: throttling, 5xx and connection errors are
retried with backoff, up to 5 attempts in all."""


def client_config(override: AioConfig | None = None, **defaults: Any) -> AioConfig:
    """asteps' defaults (standard retries, plus ``defaults``), with the caller's
    ``override`` merged over them."""
    config = AioConfig(retries=DEFAULT_RETRIES, **defaults)
    return config.merge(override) if override else config


async def open_client(
    stack: AsyncExitStack,
    service: str,
    *,
    session: aioboto3.Session | None,
    endpoint_url: str | None,
    region_name: str | None,
    config: AioConfig,
) -> Any:
    """Open an aioboto3 client for ``service`` (``"s3"``, ``"swf"``) inside
    ``stack``: it closes when the stack does. Without a ``session``, the usual
    AWS environment and config files give credentials and region."""
    session = session or aioboto3.Session()
    return await stack.enter_async_context(
        session.client(service, endpoint_url=endpoint_url, region_name=region_name, config=config)
    )
