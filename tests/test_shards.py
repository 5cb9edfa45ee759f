"""Shards (`--shard K/N`): a stable hash, the option's checks, and N shards of
any source of ids (`--ids`, `--all`, `--missing`) covering each id once."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from asteps._batch import BadId
from asteps._shards import MAX_SHARDS, Shard, parse_shard, shard_of
from asteps.cli import main

FLOWS = Path(__file__).parent / "flows" / "swf_flows.py"
FLOW = f"{FLOWS}:three_steps"


def test_each_id_is_in_exactly_one_of_n_shards() -> None:
    ids = [f"customer-{i}" for i in range(3000)] + ["é", "日本", "", "a b"]
    for count in (1, 2, 3, 7, 64):
        holders = Counter(wid for k in range(count) for wid in ids if Shard(k, count).holds(wid))
        assert holders == Counter(ids), count
        sizes = Counter(shard_of(wid, count) for wid in ids)
        assert len(sizes) == count  # each shard gets some: the hash spreads them


def test_the_shard_is_the_first_8_bytes_of_sha256_modulo_n() -> None:
    digest = hashlib.sha256(b"customer-42").digest()
    assert shard_of("customer-42", 10) == int.from_bytes(digest[:8], "big") % 10
    assert shard_of("customer-42", 10) == 9  # pinned: the same on every machine and run


def test_an_undecodable_line_belongs_to_one_shard_too() -> None:
    bad = BadId(b"\xff\xfe".decode("utf-8", "surrogateescape"), "not UTF-8")
    assert sum(Shard(k, 4).holds(bad.text) for k in range(4)) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0/1", Shard(0, 1)),
        ("3/4", Shard(3, 4)),
        (" 2/10 ", Shard(2, 10)),
        ("0/100000", Shard(0, MAX_SHARDS)),
    ],
)
def test_a_shard_reads_as_k_of_n_counted_from_0(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4/4", "numbered from 0 to 3"),
        ("1/0", "1 to 100,000"),
        ("0/100001", "1 to 100,000"),
        ("-1/4", "is not K/N"),
        ("1", "is not K/N"),
        ("1/2/3", "is not K/N"),
        ("a/b", "is not K/N"),
        ("1/99999999999", "is not K/N"),
        ("", "is not K/N"),
    ],
)
def test_a_bad_shard_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shard(text)


# -- through the CLI, on a file store -----------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASTEPS_STORE", raising=False)
    return CliRunner()


def rerun(cli: CliRunner, log: Path, *args: str) -> Result:
    return cli.invoke(
        main,
        ["rerun", FLOW, "--param", f"log={log}", "--param", "delay=0", "--no-progress", *args],
        catch_exceptions=False,
    )


def ran(log: Path) -> Counter[str]:
    """How many times each workflow ran step a."""
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[0] for line in lines if line.endswith(" a"))


def run_shards(
    cli: CliRunner, tmp_path: Path, count: int, *args: str
) -> tuple[Counter[str], list[Any]]:
    log = tmp_path / f"ran-{len(list(tmp_path.iterdir()))}.log"
    summaries = []
    for k in range(count):
        done = rerun(cli, log, *args, "--shard", f"{k}/{count}", "--json")
        assert done.exit_code == 0, done.output
        summaries.append(json.loads(done.stdout))
    return ran(log), summaries


def test_the_shards_of_an_ids_file_run_each_id_once(cli: CliRunner, tmp_path: Path) -> None:
    ids = [f"w{i}" for i in range(60)]
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in [*ids, "w1", "w2"]))

    counts, summaries = run_shards(cli, tmp_path, 3, "--ids", "ids.txt")

    assert counts == Counter(ids)
    assert [s["shard"] for s in summaries] == ["0/3", "1/3", "2/3"]
    for s in summaries:  # every line read is run here or left to another shard
        assert s["workflows"]["succeeded"] + s["other_shards"] <= 62
    assert sum(s["workflows"]["succeeded"] for s in summaries) == 60


def test_the_shards_of_the_stores_listing_run_each_workflow_once(
    cli: CliRunner, tmp_path: Path
) -> None:
    ids = [f"w{i}" for i in range(40)]
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in ids))
    assert rerun(cli, tmp_path / "first.log", "--ids", "ids.txt").exit_code == 0

    counts, summaries = run_shards(cli, tmp_path, 4, "--all", "--force", "a")

    assert counts == Counter(ids)
    assert sum(s["other_shards"] for s in summaries) == 3 * 40


def test_the_shards_of_missing_run_each_chosen_workflow_once(
    cli: CliRunner, tmp_path: Path
) -> None:
    done_before = [f"old{i}" for i in range(20)]
    new = [f"new{i}" for i in range(30)]
    (tmp_path / "old.txt").write_text("".join(f"{w}\n" for w in done_before))
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in [*done_before, *new]))
    assert rerun(cli, tmp_path / "first.log", "--ids", "old.txt").exit_code == 0

    counts, summaries = run_shards(cli, tmp_path, 3, "--ids", "ids.txt", "--missing", "c")

    assert counts == Counter(new)
    assert sum(s["passed_over"] for s in summaries) == 20


def test_the_table_says_which_shard_ran(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    done = rerun(cli, tmp_path / "ran.log", "--ids", "ids.txt", "--shard", "1/2")
    assert done.exit_code == 0, done.output
    assert "shard" in done.stdout
    assert "1/2" in done.stdout


@pytest.mark.parametrize(
    "command",
    [["rerun", FLOW, "--ids", "-"], ["swf", "submit", FLOW, "--domain", "d", "--ids", "-"]],
)
@pytest.mark.parametrize("value", ["2/2", "1/0", "x", "0/100001"])
def test_a_bad_shard_exits_2_naming_the_option(
    cli: CliRunner, command: list[str], value: str
) -> None:
    done = cli.invoke(main, [*command, "--shard", value], input="")
    assert done.exit_code == 2
    assert "--shard" in done.output
