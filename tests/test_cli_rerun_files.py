"""The files ``asteps rerun`` writes beside the ids it reads: the retry file,
the unfinished ids and the resume point.

Each is written while the ids are read, by a batch that may run for hours:
it must never overwrite the ids, nor another rerun's file, and a file that
cannot be written whole must say what it holds.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from asteps.cli._batch_io import RetryFile, resume_path
from asteps.cli._retry import save_retry_ids

from .conftest import asteps_process, invoke

ROOT = Path(__file__).resolve().parent.parent
FLOW = str(ROOT / "examples" / "export_pipeline.py") + ":flow"
FAIL = ["--param", "fail=fetch.orders", "--param", "delay=0", "--no-progress"]


def write_ids(path: Path, ids: list[str]) -> str:
    path.write_text("".join(f"{wid}\n" for wid in ids))
    return str(path)


# -- the retry file is not the ids file ------------------------------------------------


@pytest.mark.parametrize(
    ("ids_name", "failed_file", "said"),
    [
        ("ids.txt", "ids.txt", "--failed-file 'ids.txt' is the --ids file"),
        ("ids.txt", "./sub/../ids.txt", "--failed-file 'sub/../ids.txt' is the --ids file"),
        ("ids.txt", "link.txt", "--failed-file 'link.txt' is the --ids file"),  # a hard link
        ("x.resume.json", "x", "the resume point 'x.resume.json' is the --ids file"),
        ("x.dry-run.resume.json", "x", "'x.dry-run.resume.json' is the --ids file"),
    ],
)
def test_a_retry_file_that_is_the_ids_file_is_refused_before_anything_runs(
    cli: CliRunner, tmp_path: Path, ids_name: str, failed_file: str, said: str
) -> None:
    ids = [f"w{i}" for i in range(50)]
    write_ids(tmp_path / ids_name, ids)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.txt").hardlink_to(tmp_path / ids_name)
    result = invoke(cli, "rerun", FLOW, "--ids", ids_name, "--failed-file", failed_file, *FAIL)
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert "give another --failed-file" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / ids_name).read_text().split() == ids  # untouched
    assert not (tmp_path / ".asteps").exists()  # nothing ran


def test_a_dry_run_never_writes_over_a_real_runs_resume_point() -> None:
    # Beside one --failed-file F, a stopped real run writes F.resume.json; a
    # stopped dry run must not replace it (a real run refuses a dry run's point).
    real = resume_path(Path("F"))
    planned = resume_path(Path("F"), dry_run=True)
    assert (real.name, planned.name) == ("F.resume.json", "F.dry-run.resume.json")


# -- two reruns in the same second, in the same directory ------------------------------


@pytest.fixture
def one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every default name is stamped with the same second."""
    monkeypatch.setattr(time, "strftime", lambda *args: "20261126-101500")


def test_two_reruns_in_the_same_second_keep_their_own_retry_files(
    cli: CliRunner, tmp_path: Path, one_second: None
) -> None:
    retry_files = []
    for name in ["a", "b"]:
        ids = write_ids(tmp_path / f"{name}.txt", [f"{name}{i}" for i in range(20)])
        result = invoke(cli, "rerun", FLOW, "--ids", ids, "--json", *FAIL)
        assert result.exit_code == 1, result.output
        retry_files.append(json.loads(result.stdout)["retry_file"])
    a, b = retry_files
    assert a != b
    assert a.startswith("asteps-failed-20261126-101500-")
    assert sorted(Path(a).read_text().split()) == sorted(f"a{i}" for i in range(20))
    assert sorted(Path(b).read_text().split()) == sorted(f"b{i}" for i in range(20))


def test_two_stopped_reruns_in_the_same_second_keep_their_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_second: None
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = RetryFile(None), RetryFile(None)
    first.add("a1")
    second.add("b1")
    unfinished = [p for p in [first.close(stopped=True), second.close(stopped=True)] if p]
    assert len(unfinished) == 2
    assert unfinished[0] != unfinished[1]
    assert [p.read_text() for p in unfinished] == ["a1\n", "b1\n"]
    assert all(p.name.startswith("asteps-unfinished-20261126-101500-") for p in unfinished)
    assert not list(tmp_path.glob("asteps-failed-*"))  # renamed, both

    points = [resume_path(None), resume_path(None)]
    assert points[0] != points[1]  # each made its own, and the other's is left alone
    assert all(p.is_file() for p in points)


def test_two_submits_in_the_same_second_keep_their_own_retry_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_second: None
) -> None:
    """``swf submit`` writes its retry file at the end, by the same rule."""
    monkeypatch.chdir(tmp_path)
    first, _ = save_retry_ids(["a1", "a2"], None, "failed")
    second, _ = save_retry_ids(["b1"], None, "failed")
    assert first is not None
    assert second is not None
    assert first != second
    assert (first.read_text(), second.read_text()) == ("a1\na2\n", "b1\n")


# -- a retry file that fills its disk --------------------------------------------------

LIMIT = 1000
"""The largest file the rerun below may write (RLIMIT_FSIZE), as a full disk would."""


def small_files_only() -> None:
    """In the child: files stop at LIMIT bytes (EFBIG, not a signal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_submits_retry_file_that_cannot_be_written_leaves_no_cut_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /dev/full takes the open and refuses every byte: the file asteps made
    # for the ids must not stay behind, empty or cut, to be taken as a list.
    monkeypatch.chdir(tmp_path)
    written, problem = save_retry_ids(["a1", "a2"], Path("/dev/full"), "failed")
    assert written is None
    assert problem is not None
    assert problem.filename == "/dev/full"
    monkeypatch.setattr(Path, "write_bytes", _refuse_bytes)
    written, problem = save_retry_ids(["a1", "a2"], None, "failed")
    assert written is None
    assert problem is not None
    assert list(tmp_path.glob("asteps-failed-*")) == []  # made, then removed
    assert str(problem.filename).startswith("asteps-failed-")  # which file, for the message


def test_a_named_retry_file_that_cannot_be_written_is_left_empty_not_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write got part of the way: a cut last line would be read back by
    # --ids as another id. The ids all go to stderr; the file is left empty.
    named = tmp_path / "failed.txt"
    monkeypatch.setattr(Path, "write_bytes", _write_part_then_refuse)
    written, problem = save_retry_ids(["a1", "a2"], named, "failed")
    assert written is None
    assert problem is not None
    assert named.read_bytes() == b""


def _write_part_then_refuse(self: Path, data: bytes) -> int:
    with self.open("wb") as out:
        out.write(data[:4])
    raise OSError(28, "No space left on device", str(self))


def _refuse_bytes(self: Path, data: bytes) -> int:
    raise OSError(28, "No space left on device", str(self))


def test_a_retry_file_that_fills_up_keeps_whole_lines_and_says_what_it_holds(
    tmp_path: Path,
) -> None:
    ids = [f"longer-workflow-id-{i:06d}" for i in range(200)]  # 26 bytes a line
    write_ids(tmp_path / "ids.txt", ids)
    env = {k: v for k, v in os.environ.items() if k != "ASTEPS_STORE"}
    done = asteps_process(
        *["rerun", FLOW, "--ids", "ids.txt", *FAIL, "--store", "memory://"],
        *["--failed-file", "failed.txt", "--concurrency", "4"],
        cwd=tmp_path,
        env=env,
        preexec_fn=small_files_only,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "Exception in thread" not in done.stderr
    kept = (tmp_path / "failed.txt").read_text()
    # The writer takes what has queued in one write: how many lines fit before
    # the limit depends on how the thread was scheduled, even none (a first
    # write over the limit). Whatever it was, only whole lines stay.
    assert kept == "" or kept.endswith("\n")  # whole lines only: no id cut short
    in_file = kept.split("\n")[:-1]
    assert len(in_file) <= LIMIT // 26
    assert set(in_file) <= set(ids)
    said = " ".join(done.stderr.split())
    if in_file:
        assert "could not write on to the retry file failed.txt (" in said
        assert f"File too large): it holds the first {len(in_file)} ids to retry;" in said
    else:
        assert "could not write the retry file failed.txt (" in said
    on_stderr = [word for word in done.stderr.split() if word in set(ids)]
    assert sorted(in_file + on_stderr) == ids  # each id to retry once, in the file or here
