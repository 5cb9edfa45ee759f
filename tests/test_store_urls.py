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


# -- malformed S3 options: a StoreError naming the option, never a traceback ---

BAD_S3_OPTIONS = [
    ("s3://b?max_concurrency=abc", "max_concurrency"),
    ("s3://b?max_concurrency=0", "max_concurrency"),
    ("s3://b?endpoint_url=notaurl", "endpoint_url"),
    ("s3://b?endpoint_url=ftp://host", "endpoint_url"),
    ("s3://b?region=bad%20region", "region"),
    ("s3://b?region=", "region"),
    ("s3://b?sse=rot13", "sse"),
    ("s3://b?kms_key_id=k", "kms_key_id"),
    ("s3://b/some//root", "key root"),
]


@pytest.mark.parametrize(("url", "option"), BAD_S3_OPTIONS)
async def test_a_malformed_s3_option_is_a_store_error_naming_it(url: str, option: str) -> None:
    with pytest.raises(StoreError, match=option):
        parse_store_url(url)
    with pytest.raises(StoreError, match=option):
        async with open_store(url):
            pass


@pytest.mark.parametrize(("url", "option"), BAD_S3_OPTIONS)
def test_the_cli_answers_a_malformed_s3_option_with_exit_3_and_one_line(
    url: str, option: str
) -> None:
    from click.testing import CliRunner

    from asteps.cli import main

    result = CliRunner().invoke(main, ["steps", "list", "--workflow-id", "w", "--store", url])
    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert option in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- a key root: s3://bucket/some/root ------------------------------------------


@pytest.mark.parametrize(
    ("url", "key_root"),
    [
        ("s3://b", ""),
        ("s3://b/", ""),
        ("s3://b/some/root", "some/root/"),
        ("s3://b/some/root/", "some/root/"),
        ("s3://b/with%20space", "with space/"),
    ],
)
def test_the_path_of_an_s3_url_is_a_key_root(url: str, key_root: str) -> None:
    parsed = parse_store_url(url)
    assert (parsed.location, parsed.key_root) == ("b", key_root)


async def test_markers_live_under_the_key_root(aws: MotoServer) -> None:
    from asteps import Runner

    async with open_store(f"s3://steps/some/root?endpoint_url={aws.endpoint_url}") as store:
        assert isinstance(store, S3Store)
        await store.client.create_bucket(Bucket="steps")
        await store.client.put_object(Bucket="steps", Key="wf/steps/outside", Body=b"{}")
        await Runner(store, "wf").step("a", lambda: None)
        listed = await store.client.list_objects_v2(Bucket="steps")
        assert sorted(o["Key"] for o in listed["Contents"]) == [
            "some/root/wf/steps/a",
            "wf/steps/outside",
        ]
        assert await store.list_done("wf/steps/") == {"a"}
        await store.unmark("wf/steps/", ["a"])
        assert await store.list_done("wf/steps/") == set()


@pytest.mark.parametrize("url", ["file:%00", "file:a%00b", "file:///tmp/x%0Ay"])
def test_a_file_url_with_a_control_character_is_a_store_error(url: str) -> None:
    with pytest.raises(StoreError, match="control character"):
        parse_store_url(url)
