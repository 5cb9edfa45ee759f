"""What the S3 store and the SWF bridge share about their aioboto3 clients."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError

DEFAULT_RETRIES = {"mode": "standard", "total_max_attempts": 5}
"""botocore's standard retry mode: throttling, 5xx and connection errors are
retried with backoff, up to 5 attempts in all."""


SETUP_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ValueError)
"""What making a client raises when the AWS environment is wrong: a
``BotoCoreError`` (``ProfileNotFound``, ``InvalidRegionError``) or, for an
``AWS_ENDPOINT_URL`` that is not a URL, a plain ``ValueError``. The user's to
fix, so each caller says it as its own error, with :data:`SETUP_HINT`."""

SETUP_HINT = (
    "check AWS_ENDPOINT_URL, AWS_PROFILE, AWS_DEFAULT_REGION (botocore does not read "
    "AWS_REGION) and the AWS config files"
)


def client_config(override: AioConfig | None = None, **defaults: Any) -> AioConfig:
    """asteps' defaults (standard retries, plus ``defaults``), with the caller's
    ``override`` merged over them.

    ``retries`` is merged key by key (the attempts, in either of botocore's
    spellings, count as one key): ``AioConfig.merge`` replaces the whole dict,
    so ``retries={"max_attempts": 2}`` would otherwise drop the standard mode
    and leave botocore's legacy one."""
    config = AioConfig(retries=DEFAULT_RETRIES, **defaults)
    if not override:
        return config
    retries = override.retries
    if retries is not None:
        merged = dict(DEFAULT_RETRIES)
        if "max_attempts" in retries or "total_max_attempts" in retries:
            del merged["total_max_attempts"]
        # A copy: botocore rewrites the dict it is given (max_attempts).
        override = override.merge(AioConfig(retries={**merged, **retries}))
    return config.merge(override)


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
    AWS environment and config files give credentials and region.

    Raises one of :data:`SETUP_ERRORS` when that environment is wrong."""
    session = session or aioboto3.Session()
    return await stack.enter_async_context(
        session.client(service, endpoint_url=endpoint_url, region_name=region_name, config=config)
    )
