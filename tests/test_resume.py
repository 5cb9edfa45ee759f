"""Resume points: a stopped rerun writes where to go on from; ``--resume`` goes on.

The resume file is untrusted input when read back: a strict model, which
never chooses a path or a store, and is refused when the source differs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from asteps import FileStore, MemoryStore, S3Store
from asteps._resume import ResumeError, ResumePoint, ResumeSource
from asteps.cli._batch_io import source_of

from .conftest import invoke

FILE = ResumeSource(
    kind="file",
    dry_run=False,
    ids_file="ids.txt",
    ids_size=120,
    store="file:.asteps",
    prefix="{workflow_id}/steps/",
)


def point_json(**fields: object) -> bytes:
    data = {"version": 1, "source": FILE.model_dump(), "unfinished": ["a"], "next_line": 4}
    return json.dumps({**data, **fields}).encode()


def test_a_resume_point_reads_back_what_was_written() -> None:
    point = ResumePoint(source=FILE, unfinished=["w1", "w2"], next_line=7)
    assert ResumePoint.from_json(point.to_json().encode(), "p.json") == point


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"store_url": "s3://elsewhere"}, "store_url"),  # an unknown field
        ({"version": 2}, "version"),
        ({"unfinished": ["a/b"]}, "unfinished"),  # not a workflow id
        ({"next_line": 0}, "next_line"),
        ({"listed_to": "x" * 300}, "listed_to"),
        # wrong types, which lax parsing would turn into a value
        ({"next_line": True}, "next_line"),
        ({"next_line": "4"}, "next_line"),
        ({"over": "yes"}, "over"),
        ({"over": 1}, "over"),
        ({"source": {**FILE.model_dump(), "ids_size": "120"}}, "source.ids_size"),
    ],
)
def test_a_resume_file_is_strict_untrusted_input(fields: dict[str, object], said: str) -> None:
    with pytest.raises(ResumeError, match=said):
        ResumePoint.from_json(point_json(**fields), "p.json")


def test_a_resume_point_says_whether_it_was_a_dry_run() -> None:
    data = json.loads(point_json())
    del data["source"]["dry_run"]  # a point that does not say is not taken as a real run's
    with pytest.raises(ResumeError, match="did not record whether it was a dry run"):
        ResumePoint.from_json(json.dumps(data).encode(), "p.json")


def test_a_resume_point_of_an_earlier_asteps_is_refused_saying_so_and_how_to_go_on() -> None:
    # Written before points recorded dry_run and the store of an ids file: it
    # cannot be checked, and is refused; the message must not say that asteps
    # did not write it, and says how to go on by hand.
    data = json.loads(point_json())
    del data["source"]["dry_run"]
    data["source"]["store"] = None
    with pytest.raises(ResumeError) as refused:
        ResumePoint.from_json(json.dumps(data).encode(), "p.json")
    said = str(refused.value)
    assert "written by an earlier asteps" in said
    assert "not a resume file" not in said
    assert "tail -n +4" in said  # its next_line
    assert "its 1 unfinished ids" in said  # read before that line, not finished


def test_a_broken_file_without_dry_run_is_not_taken_for_an_earlier_asteps_point() -> None:
    data = json.loads(point_json(unfinished=["../x"]))
    del data["source"]["dry_run"]
    with pytest.raises(ResumeError, match="not a resume file asteps wrote"):
        ResumePoint.from_json(json.dumps(data).encode(), "p.json")


def test_a_resume_file_too_big_is_refused_unparsed() -> None:
    with pytest.raises(ResumeError, match="not a resume file"):
        ResumePoint.from_json(b" " * (16 * 1024 * 1024 + 1), "p.json")


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (FILE.model_copy(update={"ids_file": "other.txt"}), "--ids 'ids.txt', not 'other.txt'"),
        (FILE.model_copy(update={"ids_size": 121}), "size 120, not 121"),
        (FILE.model_copy(update={"shard": "0/2"}), "the shard None"),
        (FILE.model_copy(update={"kind": "all", "ids_file": None}), "kind 'file'"),
        (
            FILE.model_copy(update={"store": "file:real"}),
            "the store 'file:.asteps', not 'file:real'",
        ),
        (FILE.model_copy(update={"dry_run": True}), "written by a real run, not a --dry-run"),
    ],
)
def test_going_on_with_another_source_is_refused_naming_the_difference(
    source: ResumeSource, said: str
) -> None:
    point = ResumePoint.from_json(point_json(), "p.json")
    with pytest.raises(ResumeError, match=said.replace("(", r"\(")):
        point.check(source)


# -- a real rerun, stopped by SIGINT, then resumed ------------------------------------

IDS = [f"w{i:03d}" for i in range(120)]
FLOW = (
    "import anyio, os, pathlib\n"
    "async def flow(runner, **params):\n"
    "    async def only():\n"
    "        with open('started.log', 'a') as f:\n"
    "            f.write(runner.workflow_id + '\\n')\n"
    "        if runner.workflow_id >= 'w010' and os.path.exists('hold'):\n"
    "            await anyio.sleep_forever()\n"
    "        with open('finished.log', 'a') as f:\n"
    "            f.write(runner.workflow_id + '\\n')\n"
    "    await runner.step('only', only)\n"
)


def rerun(tmp_path: Path, *args: str, failed_file: str = "left.txt") -> subprocess.Popen[str]:
    env = {**os.environ, "ASTEPS_STORE": f"file:{tmp_path / 'store'}"}
    command = [sys.executable, "-m", "asteps", "rerun", "flow.py:flow", *args]
    options = ["--concurrency", "5", "--failed-file", failed_file, "--json", "--no-progress"]
    return subprocess.Popen(
        [*command, *options],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("source", ["--ids", "--all"])
def test_a_stopped_rerun_goes_on_from_its_resume_point_running_each_id_once(
    tmp_path: Path, source: str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    if source == "--all":  # the store knows the workflows: each has a step done
        for wid in IDS:
            (tmp_path / "store" / wid / "steps").mkdir(parents=True)
            (tmp_path / "store" / wid / "steps" / "seed").write_text("{}")
    args = ["--ids", "ids.txt"] if source == "--ids" else ["--all"]
    (tmp_path / "hold").touch()  # w010 and after wait until stopped
    first = rerun(tmp_path, *args)
    deadline = time.monotonic() + 180  # a bound to give up, not a timing
    while len(lines(tmp_path / "finished.log")) < 10:  # w000 to w009 are done
        assert time.monotonic() < deadline, "the first ten did not finish within 180 s"
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    stopped = json.loads(stdout)
    assert stopped["resume_file"] == "left.txt.resume.json"
    point = json.loads((tmp_path / "left.txt.resume.json").read_text())
    assert point["unfinished"] == stopped["unfinished_ids"]
    assert point["unfinished"]  # those in flight at least
    if source == "--ids":
        assert point["next_line"] > 10
    else:
        assert point["listed_to"] >= "w010"

    (tmp_path / "hold").unlink()
    # Its own retry file: left.txt holds the first run's (refused below as the second's).
    second = rerun(tmp_path, *args, "--resume", "left.txt.resume.json", failed_file="left2.txt")
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    resumed = json.loads(stdout)
    assert resumed["workflows"]["failed"] == 0
    assert resumed["resume_file"] is None
    # Every id ran to the end exactly once, over the two runs: the union covers all.
    assert Counter(lines(tmp_path / "finished.log")) == Counter(IDS)
    marked = {p.parent.parent.name for p in (tmp_path / "store").glob("*/steps/only")}
    assert marked == set(IDS)


FAILING_FLOW = (
    "async def flow(runner, **params):\n"
    "    async def only():\n"
    "        if runner.workflow_id == 'w070':\n"
    "            raise RuntimeError('upstream is down')\n"
    "    await runner.step('only', only)\n"
)


def test_a_resumed_run_adds_to_the_retry_file_of_the_run_it_resumes(tmp_path: Path) -> None:
    """The natural command, the same one with --resume F.resume.json, wrote the
    resumed run's failed ids over F, where the first run's were, and nowhere
    else: they are kept, the new ones added after them."""
    (tmp_path / "flow.py").write_text(FAILING_FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    with (tmp_path / "ids.txt").open("rb") as ids:
        store = f"file:{tmp_path / 'store'}"  # as rerun() gives it, through $ASTEPS_STORE
        source = source_of(ids, store, "{workflow_id}/steps/", None, dry_run=False)
    (tmp_path / "left.txt.resume.json").write_text(
        ResumePoint(source=source, unfinished=["w040"], next_line=60).to_json()
    )
    (tmp_path / "left.txt").write_text("w007\nw040")  # w007 failed; w040 was unfinished
    ids_file = str(tmp_path / "ids.txt")
    done = rerun(tmp_path, "--ids", ids_file, "--resume", "left.txt.resume.json")
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == 1, stderr  # w070 failed
    assert json.loads(stdout)["failed_ids"] == ["w070"]
    # The first run's lines kept (its last one ended, not joined to the next).
    assert (tmp_path / "left.txt").read_text() == "w007\nw040\nw070\n"


def test_resume_refuses_another_ids_file_before_running_anything(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "ids.txt").write_text("a\nb\n")
    (tmp_path / "p.json").write_bytes(point_json())  # written for ids.txt of 120 bytes
    done = rerun(tmp_path, "--ids", "ids.txt", "--resume", "p.json")
    _, stderr = done.communicate(timeout=60)
    assert done.returncode == 2
    assert "size 120, not 4" in stderr
    assert not (tmp_path / "started.log").exists()


def test_resume_refuses_a_wrongly_typed_field_naming_it(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "ids.txt").write_text("a\nb\n")
    (tmp_path / "p.json").write_bytes(point_json(over="yes"))  # lax: "yes" is True
    done = rerun(tmp_path, "--ids", "ids.txt", "--resume", "p.json")
    _, stderr = done.communicate(timeout=60)
    assert done.returncode == 2
    assert "p.json is not a resume file asteps wrote (over: " in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "started.log").exists()


@pytest.mark.parametrize(
    ("written_by", "said"),
    [
        (["--dry-run"], "written by a --dry-run: the ids it read were only planned, not run"),
        (["--store", "memory://"], "the store 'memory://', not 'file:"),
    ],
)
def test_a_real_rerun_refuses_a_dry_runs_or_another_stores_resume_point(
    tmp_path: Path, written_by: list[str], said: str
) -> None:
    """A stopped dry run, or a rerun on another store, read ids that did not
    run here: going on from its line would skip them for good."""
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    dry_run = "--dry-run" in written_by
    store = "memory://" if "--store" in written_by else None
    with (tmp_path / "ids.txt").open("rb") as ids:
        source = source_of(ids, store, "{workflow_id}/steps/", None, dry_run=dry_run)
    stopped = ResumePoint(source=source, unfinished=["w040"], next_line=60)
    (tmp_path / "p.json").write_text(stopped.to_json())
    done = rerun(tmp_path, "--ids", str(tmp_path / "ids.txt"), "--resume", "p.json")
    _, stderr = done.communicate(timeout=60)
    assert done.returncode == 2, stderr
    assert said in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "started.log").exists()


STOPPING_FLOW = (
    "import os, signal, anyio\n"
    "async def flow(runner, **params):\n"
    "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the first workflow starts\n"
    "    await anyio.sleep_forever()\n"
)


def test_a_rerun_stopped_again_and_again_keeps_its_resume_point_bounded(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Going on from a point runs its unfinished ids first: the ids file is
    not read before they are taken, so that a stop then leaves them and what
    is in flight, not them and a reader's buffer more at every stop (a point
    that grew with each Ctrl-C, up to its limit of ids, where writing it
    failed with a traceback)."""
    (tmp_path / "flow.py").write_text(STOPPING_FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    concurrency = 2
    args = ["rerun", "flow.py:flow", "--ids", "ids.txt", "--failed-file", "left.txt"]
    args += ["--concurrency", str(concurrency), "--no-progress", "--json"]
    resume: list[str] = []
    for _ in range(12):
        result = invoke(cli, *args, *resume)
        assert result.exit_code == 130, result.output
        point = json.loads((tmp_path / "left.txt.resume.json").read_text())
        resume = ["--resume", "left.txt.resume.json"]
        # No id lost: each is unfinished, or on the lines still to read.
        assert set(point["unfinished"]) | set(IDS[point["next_line"] - 1 :]) == set(IDS)
        # In flight (listed, waiting, at work), and the reader's buffer.
        assert len(point["unfinished"]) <= 3 * concurrency + 4 * concurrency


def test_a_stop_while_going_on_from_a_point_whose_ids_were_all_read_says_none_are_left(
    cli: CliRunner, tmp_path: Path
) -> None:
    """The point's ids file had been read to its end (``over``): stopped
    while its unfinished ids ran, the summary said that reading stopped
    "after 0 ids" (of the empty stand-in that followed them), as if ids were
    left to read. The stop comes as the first workflow starts, when at most a
    few times the concurrency of the 20 unfinished ids have been taken."""
    (tmp_path / "flow.py").write_text(STOPPING_FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    with Path("ids.txt").open("rb") as ids:  # in tmp_path, as --ids gives it
        source = source_of(ids, None, "{workflow_id}/steps/", None, dry_run=False)
    left = IDS[40:60]
    over = ResumePoint(source=source, unfinished=left, over=True)
    (tmp_path / "left.txt.resume.json").write_text(over.to_json())
    args = ["rerun", "flow.py:flow", "--ids", "ids.txt", "--failed-file", "left.txt"]
    args += ["--resume", "left.txt.resume.json", "--concurrency", "2", "--no-progress"]
    result = invoke(cli, *args, "--json")
    assert result.exit_code == 130, result.output
    summary = json.loads(result.stdout)
    assert (summary["stopped_at"], summary["next_line"]) == (None, None)
    assert sorted(summary["unfinished_ids"]) == left
    point = json.loads((tmp_path / "left.txt.resume.json").read_text())
    assert (point["over"], sorted(point["unfinished"])) == (True, left)
    table = invoke(cli, *args)
    assert table.exit_code == 130, table.output
    assert "after 0 ids" not in table.stdout
    assert "reading stopped" not in table.stdout


def point_for_ids_txt(unfinished: list[str], next_line: int) -> str:
    """A real run's point over ``ids.txt`` in the working directory, on the
    default store (the ``cli`` fixture's)."""
    with Path("ids.txt").open("rb") as ids:
        source = source_of(ids, None, "{workflow_id}/steps/", None, dry_run=False)
    return ResumePoint(source=source, unfinished=unfinished, next_line=next_line).to_json()


@pytest.mark.parametrize("failed_file", [["--failed-file", "left.txt"], []])
def test_a_run_that_goes_on_from_a_point_to_the_end_removes_it(
    cli: CliRunner, tmp_path: Path, failed_file: list[str]
) -> None:
    """A point is used up by the run that goes on from it: left in place once
    that run completed, a later --resume of it ran its ids again (and forced
    the forced steps again), as if the work were still to do."""
    (tmp_path / "flow.py").write_text(FAILING_FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    used = tmp_path / "left.txt.resume.json"
    used.write_text(point_for_ids_txt(unfinished=["w040"], next_line=60))
    args = ["rerun", "flow.py:flow", "--ids", "ids.txt", *failed_file, "--no-progress"]
    done = invoke(cli, *args, "--resume", used.name, "--json")
    assert done.exit_code == 1, done.output  # w070 failed: the run went on to the end
    assert json.loads(done.stdout)["resume_file"] is None
    assert not used.exists()
    assert f"{used.name} is used up" in done.stderr
    assert list(tmp_path.glob("*resume*")) == []  # nor any other point left
    again = invoke(cli, *args, "--resume", used.name)
    assert again.exit_code == 2  # no such file: nothing to go on from
    assert not (tmp_path / "started.log").exists()


def test_a_run_that_goes_on_from_a_point_and_stops_again_leaves_its_new_point_only(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Without --failed-file, each stop writes a point of its own name: the
    one gone on from, replaced by the new one, is removed once that is written."""
    (tmp_path / "flow.py").write_text(STOPPING_FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    used = tmp_path / "asteps-resume-first.json"
    used.write_text(point_for_ids_txt(unfinished=["w040"], next_line=60))
    args = ["rerun", "flow.py:flow", "--ids", "ids.txt", "--no-progress", "--json"]
    stopped = invoke(cli, *args, "--resume", used.name)
    assert stopped.exit_code == 130, stopped.output
    new = tmp_path / json.loads(stopped.stdout)["resume_file"]
    assert list(tmp_path.glob("*resume*")) == [new]
    point = json.loads(new.read_text())
    assert "w040" in point["unfinished"]  # nothing of the old point is lost
    assert point["over"] or point["next_line"] >= 60  # the small file may be read whole


def test_a_point_gone_on_from_is_kept_when_its_replacement_cannot_be_written(
    cli: CliRunner, tmp_path: Path
) -> None:
    """It still holds all that is left (and what the run did, which going on
    from it again skips, done step by done step)."""
    (tmp_path / "flow.py").write_text(STOPPING_FLOW)
    (tmp_path / "ids.txt").write_text("".join(f"{w}\n" for w in IDS))
    used = tmp_path / "first.json"
    used.write_text(point_for_ids_txt(unfinished=["w040"], next_line=60))
    (tmp_path / "left.txt.resume.json").mkdir()  # where the new point cannot go
    args = ["rerun", "flow.py:flow", "--ids", "ids.txt", "--failed-file", "left.txt"]
    stopped = invoke(cli, *args, "--resume", used.name, "--no-progress", "--json")
    assert stopped.exit_code == 130, stopped.output
    assert json.loads(stopped.stdout)["resume_file"] is None
    assert "could not write the resume point" in stopped.stderr
    assert used.read_text() == point_for_ids_txt(unfinished=["w040"], next_line=60)


# -- the store's listing goes on after a workflow ------------------------------------

NAMES = ["a", "a-b", "a.b", "a0", "b", "w1", "w10", "w2"]


async def listed(store: MemoryStore | FileStore | S3Store, **kw: str) -> list[str]:
    for name in NAMES:
        await store.mark_done(f"{name}/steps/", "x", {})
    return [name async for name in store.list_workflows("", **kw)]


async def check_s3_order(store: MemoryStore | FileStore | S3Store) -> None:
    # S3's order is that of "name/": "a-b/" and "a./" come before "a/"
    in_order = ["a-b", "a.b", "a", "a0", "b", "w1", "w10", "w2"]
    assert await listed(store) == in_order
    after = [name async for name in store.list_workflows("", start_after="a")]
    assert after == ["a0", "b", "w1", "w10", "w2"]  # none of a's own keys again
    gone = [name async for name in store.list_workflows("", start_after="v")]
    assert gone == ["w1", "w10", "w2"]  # a name that is not there: what sorts after it


async def test_the_memory_and_file_stores_list_in_s3_order_after_a_name(tmp_path: Path) -> None:
    await check_s3_order(MemoryStore())
    async with FileStore(tmp_path / "store") as store:
        await check_s3_order(store)


async def test_s3_lists_workflows_after_a_name_with_start_after(s3: S3Store) -> None:
    await check_s3_order(s3)
