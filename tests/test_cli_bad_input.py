"""Bad input to every command: refused with its exit code and one line, before any write.

Exit 2 is bad usage or input; a bad line of a `rerun` ids file is one failed
workflow (exit 1), and the others run. In every case the store stays empty.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from asteps._batch import MAX_LINE_BYTES
from asteps.cli import main

ROOT = Path(__file__).resolve().parent.parent
FLOW = str(ROOT / "examples" / "export_pipeline.py") + ":flow"
NO_PARAMS = "strict.py:flow"  # a flow without **params (written by the fixture)
UNREACHABLE = "s3://bkt?endpoint_url=http://127.0.0.1:9"  # nothing listens on port 9

BAD_IDS = [
    pytest.param("a/b", id="slash"),
    pytest.param("..", id="dot-dot"),
    pytest.param("esc\x1b[31mred", id="escape"),
    pytest.param("nul\x00x", id="nul"),
    pytest.param("a\x85b", id="U+0085"),
    pytest.param("a\x9bb", id="U+009B"),
    pytest.param("a\u2028b", id="U+2028"),
    pytest.param("a\u200bb", id="U+200B"),
    pytest.param("a\u202eb", id="U+202E"),
    pytest.param("a\udcffb", id="lone-surrogate"),
    pytest.param("x" * 256, id="256-bytes"),
    pytest.param("é" * 128, id="256-utf8-bytes"),
]

# (command line, exit code, a word of the message)
USAGE = [
    (["run", "no_colon", "--workflow-id", "c1"], "must be 'package.module:function'"),
    (["run", FLOW, "--workflow-id", "c1", "--force", "a..b"], "empty segment"),
    (["run", FLOW, "--workflow-id", "c1", "--skip", "a b"], "contains ' '"),
    (["run", FLOW, "--workflow-id", "c1", "--param", "novalue"], "key=value"),
    (["run", FLOW, "--workflow-id", "c1", "--param", "runner=1"], "runner argument"),
    (["run", FLOW, "--workflow-id", "c1", "--param", "fial=export.csv"], "'fial'"),
    (["run", NO_PARAMS, "--workflow-id", "c1", "--param", "unknown=1"], "'unknown'"),
    (["run", "strict.py:needs", "--workflow-id", "c1"], "missing a required argument"),
    (["run", FLOW, "--workflow-id", "c1", "--prefix", "{nope}/"], "{nope}"),
    (["run", FLOW, "--workflow-id", "c1", "--prefix", "/abs/{workflow_id}/"], "relative"),
    (["run", FLOW, "--workflow-id", "c1", "--prefix", "{workflow_id}/../x/"], "'..'"),
    (["run", FLOW, "--workflow-id", "c1", "--prefix", "{"], "malformed"),
    (["plan", FLOW, "--workflow-id", "c1", "--force", "*x"], "pattern"),
    (["plan", FLOW, "--workflow-id", "c1", "--param", "runner=1"], "runner argument"),
    (["rerun", FLOW, "--ids", "ids.txt", "--force", "a..b"], "empty segment"),
    (["rerun", FLOW, "--ids", "ids.txt", "--param", "runner=1"], "runner argument"),
    (["rerun", NO_PARAMS, "--ids", "ids.txt", "--param", "unknown=1"], "'unknown'"),
    (["rerun", FLOW, "--ids", "ids.txt", "--prefix", "{nope}/"], "{nope}"),
    (["rerun", FLOW, "--ids", "ids.txt", "--prefix", "shared/"], "does not hold {workflow_id}/"),
    (["rerun", FLOW, "--ids", "ids.txt", "--failed-file", "/nonexistent/x.txt"], "retry file"),
    (["rerun", FLOW, "--ids", "missing.txt"], "missing.txt"),
    (["steps", "list"], "exactly one of"),
    (["steps", "list", "--workflow-id", "c1", "--ids", "ids.txt"], "exactly one of"),
    # the bytes that are not UTF-8 are shown as bytes, not as Python's stand-ins for them
    (
        ["steps", "list", "--ids", "undecodable.txt"],
        "line 2 is not UTF-8 (invalid start byte at byte 4): 'bad-\\xff'",
    ),
    (["steps", "list", "--ids", "garbage.bin"], "not UTF-8"),
    (["steps", "list", "--ids", "long.txt"], "line 2 is longer than 4096 bytes"),
    (["steps", "list", "--ids", "invalid.txt"], "--ids: line 2: workflow id 'a/b' contains '/'"),
    (["steps", "unmark", "--ids", "invalid.txt", "a"], "--ids: line 2: workflow id"),
    (["steps", "list", "--workflow-id", "c1", "--prefix", "/x/"], "relative"),
    (["steps", "mark", "--workflow-id", "c1", "bad..name"], "empty segment"),
    (["steps", "mark", "--workflow-id", "c1", "*"], "pattern, not a step name"),
    (["steps", "mark", "--ids", "undecodable.txt", "a"], "line 2 is not UTF-8"),
    (["steps", "mark", "--ids", "ids.txt", "a", "--prefix", "shared/"], "does not hold"),
    (["steps", "unmark", "--workflow-id", "c1", "a b", "--yes"], "contains ' '"),
    (["steps", "unmark", "--workflow-id", "c1", "a b", "--store", UNREACHABLE], "contains ' '"),
    (["steps", "unmark", "--ids", "long.txt", "a", "--yes"], "longer than"),
    (["demo", "--workflow-id", "a/b"], "'/'"),
    # the group's -v given after the command: the error says where it goes
    (["run", FLOW, "--workflow-id", "c1", "-v"], "-v and -vv go before the command"),
    (["rerun", FLOW, "--ids", "ids.txt", "-vv"], "-v and -vv go before the command"),
    (["steps", "list", "--workflow-id", "c1", "--verbose"], "go before the command"),
]

ID_COMMANDS = [
    ["run", FLOW, "--workflow-id"],
    ["plan", FLOW, "--workflow-id"],
    ["steps", "list", "--workflow-id"],
    ["steps", "mark", "a", "--workflow-id"],
    ["steps", "unmark", "a", "--yes", "--workflow-id"],
    ["demo", "--workflow-id"],
]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI in a temporary directory holding the ids files the rows name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASTEPS_STORE", raising=False)
    (tmp_path / "strict.py").write_text(
        "async def flow(runner, *, customer=''):\n    pass\n"
        "async def needs(runner, *, customer):\n    pass\n"
    )
    (tmp_path / "ids.txt").write_text("c1\nc2\n")
    (tmp_path / "undecodable.txt").write_bytes(b"c1\nbad-\xff\nc2\n")
    (tmp_path / "garbage.bin").write_bytes(bytes(range(128, 256)) * 4)
    (tmp_path / "long.txt").write_bytes(b"c1\n" + b"x" * 5000 + b"\nc2\n")
    (tmp_path / "invalid.txt").write_text("c1\na/b\n")
    return CliRunner()


def assert_refused(result: object, code: int, message: str) -> None:
    output = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert result.exit_code == code, output  # type: ignore[attr-defined]
    # ours: "error: ..."; click's own: "Usage: ...", "Try ...", "Error: ..."
    lines = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert message in lines[0]
    assert not any(c in output for c in "\x1b\x00\x85\x9b\u2028\u200b\u202e")
    assert not Path(".asteps").exists()


@pytest.mark.parametrize(("args", "message"), USAGE)
def test_bad_usage_exits_2_with_one_line_and_writes_nothing(
    cli: CliRunner, args: list[str], message: str
) -> None:
    assert_refused(cli.invoke(main, args), 2, message)


@pytest.mark.parametrize("command", ID_COMMANDS, ids=lambda c: "-".join(c[:2]).split(":")[0][-12:])
@pytest.mark.parametrize("workflow_id", BAD_IDS)
def test_a_bad_workflow_id_exits_2_with_one_line_and_writes_nothing(
    cli: CliRunner, command: list[str], workflow_id: str
) -> None:
    assert_refused(cli.invoke(main, [*command, workflow_id]), 2, "workflow id")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"bad-\xff\n", "line 1 is not UTF-8"),
        (bytes(range(128, 256)), "line 1 is not UTF-8"),
        (b"x" * 5000 + b"\n", "line 1 is longer than 4096 bytes"),
        (b"a/b\n", "'/'"),
        ("a\u2028b\n".encode(), "workflow id"),
        (b"x" * 256 + b"\n", "255"),
    ],
)
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_bad_line_of_a_rerun_ids_file_is_one_failed_workflow(
    cli: CliRunner, content: bytes, reason: str, dry_run: list[str]
) -> None:
    Path("bad.txt").write_bytes(content)
    args = ["rerun", FLOW, "--ids", "bad.txt", "--no-progress", "--json", *dry_run]
    result = cli.invoke(main, args)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["workflows"]["failed"] == 1
    assert reason in next(iter(summary["errors"].values()))
    assert not Path(".asteps").exists()
    retry = Path(summary["retry_file"]).read_bytes()
    if len(content) < 4096:
        assert retry == content.strip() + b"\n"  # written back as it came
    else:  # the line as read, cut just past the limit: it fails again, never runs
        assert retry == content.strip()[: MAX_LINE_BYTES + 1] + b"\n"


@pytest.mark.parametrize("stdin", [False, True])
def test_an_undecodable_line_fails_alone_and_every_other_id_runs(
    cli: CliRunner, stdin: bool
) -> None:
    content = b"".join(b"id-%d\n" % i for i in range(300)) + b"bad-\xff\n"
    content += b"".join(b"id-%d\n" % i for i in range(300, 310))
    Path("ids.txt").write_bytes(content)
    args = ["rerun", FLOW, "--ids", "-" if stdin else "ids.txt", "--param", "delay=0"]
    result = cli.invoke(main, [*args, "--no-progress"], input=content if stdin else None)
    assert result.exit_code == 1, result.output
    assert "workflows succeeded │ 310" in result.stdout
    assert "line 301 is not UTF-8" in result.stdout
    assert len(list(Path(".asteps").iterdir())) == 310


def test_steps_list_with_an_undecodable_line_from_stdin_exits_2(cli: CliRunner) -> None:
    result = cli.invoke(main, ["steps", "list", "--ids", "-"], input=b"c1\n\xfe\n")
    assert_refused(result, 2, "line 2 is not UTF-8")


class OneLineForever(io.RawIOBase):
    """An ids file of one line that never ends (``--ids -`` fed from
    /dev/zero): read in chunks, it can be refused; read line by line, the
    first line would be read whole, however long."""

    def __init__(self) -> None:
        self.reads: list[int] = []

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.reads.append(len(buffer))
        buffer[:] = b"x" * len(buffer)
        return len(buffer)

    def __iter__(self) -> Any:
        raise AssertionError("the ids file was read line by line: one line can be any size")


def test_steps_read_an_ids_file_in_bounded_chunks_and_refuse_a_line_too_long() -> None:
    """`steps list|mark|unmark --ids` read the file as `rerun` does, in chunks:
    a 400 MB line took 860 MB of memory before its "too long" error."""
    from asteps.cli.steps import targets

    stream = OneLineForever()
    with pytest.raises(SystemExit) as exited:
        targets(None, stream, "{workflow_id}/steps/")  # type: ignore[arg-type]
    assert exited.value.code == 2
    assert stream.reads
    assert max(stream.reads) <= 1 << 20


def test_a_line_too_long_in_an_ids_file_is_quoted_short_in_the_error(tmp_path: Any) -> None:
    """The error names the line and quotes the start of it, not the 4 KB the
    reader kept of it (16 KB of escapes for a line of NUL bytes)."""
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\x00" * 100_000 + b"\nc-1\n")
    result = CliRunner().invoke(main, ["steps", "list", "--ids", str(ids)])
    assert result.exit_code == 2
    assert "--ids: line 1 is longer than 4096 bytes: " in result.stderr
    assert len(result.stderr) < 400
