"""Store URLs: one parser for the CLI, the demo and services."""

from __future__ import annotations

from pathlib import Path

import pytest

from asteps import FileStore, MemoryStore, S3Store, StoreError, open_store, parse_store_url
from asteps.stores.urls import DEFAULT_URL, default_store_url
from asteps.testing import MotoServer


@pytest.mark.parametrize(
    ("url", "scheme", "location", "options"),
    [
        ("memory://", "memory", "", {}),
        ("file:///var/lib/asteps", "file", "/var/lib/asteps", {}),
        ("file:relative/dir", "file", "relative/dir", {}),
        ("s3://bucket", "s3", "bucket", {}),
        (
            "s3://b?endpoint_url=http://127.0.0.1:9000&region=eu-west-3&sse=AES256",
            "s3",
            "b",
            {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-3", "sse": "AES256"},
        ),
    ],
)
def test_store_urls_parse(url: str, scheme: str, location: str, options: dict[str, str]) -> None:
    parsed = parse_store_url(url)
    assert (parsed.scheme, parsed.location, parsed.options) == (scheme, location, options)


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("ftp://x", "use s3://bucket, file:path or memory://"),
        ("s3://", "no bucket"),
        ("s3://b?colour=red", "unknown option"),
        ("file:", "no path"),
    ],
)
def test_bad_store_urls_say_what_a_good_one_looks_like(url: str, hint: str) -> None:
    with pytest.raises(StoreError, match=hint):
        parse_store_url(url)


def test_the_environment_picks_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASTEPS_STORE", raising=False)
    assert default_store_url() == DEFAULT_URL == "file:.asteps"
    monkeypatch.setenv("ASTEPS_STORE", "memory://")
    assert default_store_url() == "memory://"


async def test_open_store_builds_each_kind(tmp_path: Path, aws: MotoServer) -> None:
    async with open_store("memory://") as store:
        assert isinstance(store, MemoryStore)
    async with open_store(f"file://{tmp_path}") as store:
        assert isinstance(store, FileStore)
        assert store.root == tmp_path
    async with open_store(f"s3://steps?endpoint_url={aws.endpoint_url}") as store:
        assert isinstance(store, S3Store)
        await store.client.create_bucket(Bucket="steps")
        await store.mark_done("wf/steps/", "a", {})
        assert await store.list_done("wf/steps/") == {"a"}
