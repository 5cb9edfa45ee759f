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
            "s3://bkt?endpoint_url=http://127.0.0.1:9000&region=eu-west-3&sse=AES256",
            "s3",
            "bkt",
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
        ("s3://bkt?colour=red", "unknown option"),
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
    ("s3://bkt?max_concurrency=abc", "max_concurrency"),
    ("s3://bkt?max_concurrency=0", "max_concurrency"),
    ("s3://bkt?max_concurrency=%D9%A3", "not a whole number"),  # int() reads an Arabic 3
    ("s3://bkt?max_concurrency=99999999999999999999", "from 1 to 1,024"),
    ("s3://bkt?sse=aws:kms&kms_key_id=", "kms_key_id is empty"),
    ("s3://bkt/a%0Ab/x", "contains a control character"),
    ("s3://bkt?endpoint_url=notaurl", "endpoint_url"),
    ("s3://bkt?endpoint_url=ftp://host", "endpoint_url"),
    ("s3://bkt?region=bad%20region", "region"),
    ("s3://bkt?region=", "region"),
    ("s3://bkt?sse=rot13", "sse"),
    ("s3://bkt?kms_key_id=k", "kms_key_id"),
    ("s3://bkt/some//root", "key root"),
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
        ("s3://bkt", ""),
        ("s3://bkt/", ""),
        ("s3://bkt/some/root", "some/root/"),
        ("s3://bkt/some/root/", "some/root/"),
        ("s3://bkt/with%20space", "with space/"),
    ],
)
def test_the_path_of_an_s3_url_is_a_key_root(url: str, key_root: str) -> None:
    parsed = parse_store_url(url)
    assert (parsed.location, parsed.key_root) == ("bkt", key_root)


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


# -- the bucket: S3's naming rules, checked when the URL is parsed ---------------


@pytest.mark.parametrize(
    "url",
    [
        "s3://[::1]/root",
        "s3://ab",
        "s3://" + "b" * 256,
        "s3://-bkt",
        "s3://bkt-",
        "s3://a..b",
        "s3://192.168.5.4",
    ],
)
def test_a_bucket_s3_would_refuse_is_refused_when_the_url_is_parsed(url: str) -> None:
    with pytest.raises(StoreError, match="3 to 63 lowercase letters, digits"):
        parse_store_url(url)


@pytest.mark.parametrize("bucket", ["My_Bucket", "b" * 64, "B" * 255])
def test_a_legacy_bucket_name_still_in_use_is_accepted(bucket: str) -> None:
    # Buckets made in us-east-1 before March 2018 may have capitals and '_',
    # up to 255 characters: S3 still serves them.
    assert parse_store_url(f"s3://{bucket}").location == bucket


def test_an_unclosed_ipv6_bracket_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="malformed"):
        parse_store_url("s3://[::1")


def test_a_port_after_the_bucket_is_refused_and_says_where_an_endpoint_goes() -> None:
    with pytest.raises(StoreError, match=r"has a port.*\?endpoint_url=http://host:9000"):
        parse_store_url("s3://bkt1:9000")


CREDENTIALS = [
    "s3://AKIAFAKE:s3cr3tpass@bkt1",
    "s3://s3cr3tpass@bkt1/root",
    "s3://bkt1?endpoint_url=http://user:s3cr3tpass@127.0.0.1:1",
    "s3://bkt1?region=us-east-1&endpoint_url=http%3A%2F%2Fuser%3As3cr3tpass%40127.0.0.1%3A1",
    "file://user:s3cr3tpass@localhost/tmp/x",
    # what urllib strips or drops before parsing: a leading space, a tab inside
    " s3://AKIA:s3cr3tpass@bkt1/x",
    "s\t3://AKIA:s3cr3tpass@bkt1",
    "s3://bkt1?endpoint_url=%20http://u:s3cr3tpass@127.0.0.1:9000",
    "s3://bkt1?endpoint_url=ht%09tp://u:s3cr3tpass@127.0.0.1:9000",
]


def test_a_relative_file_path_with_an_at_sign_after_a_double_slash_is_a_path() -> None:
    # Only an authority (scheme://user@host) holds credentials, not a path.
    assert parse_store_url("file:backups//alice@corp/markers").location == (
        "backups//alice@corp/markers"
    )


@pytest.mark.parametrize("url", CREDENTIALS)
def test_credentials_in_a_store_url_are_refused_without_being_repeated(url: str) -> None:
    with pytest.raises(StoreError, match="credentials") as info:
        parse_store_url(url)
    assert "s3cr3tpass" not in str(info.value)
    assert "AWS_PROFILE" in str(info.value)


@pytest.mark.parametrize(
    "bucket", ["AKIAFAKE:s3cr3tpass@bkt1", "http://user:s3cr3tpass@127.0.0.1:5000/bkt1"]
)
def test_an_s3store_refuses_credentials_in_its_bucket_without_repeating_them(bucket: str) -> None:
    with pytest.raises(StoreError, match="credentials") as info:
        S3Store(bucket)
    assert "s3cr3tpass" not in str(info.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        " http://AKIA:s3cr3tpass@localhost:9",
        "ht\ttp://u:s3cr3tpass@host",
        "\x00http://u:s3cr3tpass@h",
    ],
)
def test_an_s3store_refuses_credentials_in_an_endpoint_however_spelled(endpoint: str) -> None:
    with pytest.raises(StoreError, match="credentials") as info:
        S3Store("bkt1", endpoint_url=endpoint)
    assert "s3cr3tpass" not in str(info.value)


def test_an_s3store_checks_the_bucket_name_as_a_url_does() -> None:
    with pytest.raises(StoreError, match="3 to 63 lowercase letters, digits"):
        S3Store("s3.eu-west-1.amazonaws.com/-bkt")


@pytest.mark.parametrize("url", [CREDENTIALS[0], "s3://bkt1:9000", "s3://[::1]/root"])
def test_the_cli_refuses_a_bad_bucket_with_exit_3_before_any_request(url: str) -> None:
    from click.testing import CliRunner

    from asteps.cli import main

    result = CliRunner().invoke(main, ["steps", "list", "--workflow-id", "w", "--store", url])
    assert result.exit_code == 3, result.output
    assert "s3cr3tpass" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


# -- one reading only: what another parser could read differently is refused ----


def test_an_option_given_twice_is_refused_rather_than_the_last_winning() -> None:
    url = "s3://bkt1?endpoint_url=http://127.0.0.1:5123&endpoint_url=http://evil"
    with pytest.raises(StoreError, match="gives option endpoint_url 2 times: give it once"):
        parse_store_url(url)


@pytest.mark.parametrize(
    "url", ["s3://bkt1#frag", "s3://bkt1/root?region=us-east-1#x", "s3://bkt1#", "file:/tmp/x#y"]
)
def test_a_fragment_is_refused(url: str) -> None:
    with pytest.raises(StoreError, match="'#'"):
        parse_store_url(url)


@pytest.mark.parametrize("url", ["memory://anything", "memory:///x", "memory:x"])
def test_a_memory_url_names_nothing(url: str) -> None:
    # Each open is a new, empty store: a name would suggest it can be found again.
    with pytest.raises(StoreError, match="memory:// names nothing"):
        parse_store_url(url)


@pytest.mark.parametrize("url", ["file:/tmp/x?y", "file:?x", "memory://?x"])
def test_a_file_or_memory_url_takes_no_options(url: str) -> None:
    with pytest.raises(StoreError, match="takes no options"):
        parse_store_url(url)


@pytest.mark.parametrize("url", ["file://etc/markers", "file://example.com/var/lib/asteps"])
def test_a_file_url_naming_a_host_is_refused_and_says_how_to_write_a_path(url: str) -> None:
    # RFC 8089 reads 'etc' as a host: as ./etc/markers it would mean something else.
    with pytest.raises(StoreError, match="file:///abs/path or file:relative/path"):
        parse_store_url(url)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file://localhost/var/lib/asteps", "/var/lib/asteps"),
        ("file://LOCALHOST/var/lib/asteps", "/var/lib/asteps"),
        ("file:///var/lib/asteps", "/var/lib/asteps"),
        ("file:/var/lib/asteps", "/var/lib/asteps"),
        ("file:relative/dir", "relative/dir"),
        ("file:.asteps", ".asteps"),
    ],
)
def test_a_file_url_is_a_local_path(url: str, path: str) -> None:
    assert parse_store_url(url).location == path
