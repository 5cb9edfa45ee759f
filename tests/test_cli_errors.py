"""The CLI's edge: what fails in task groups is unwrapped there, and each
failure is said; none is dropped."""

from __future__ import annotations

import anyio
import pytest

from asteps.cli.app import EXIT_STORE, run_async
from asteps.errors import FlowError, StoreError


async def two_tasks_fail() -> None:
    async def fail(exc: Exception) -> None:
        raise exc  # before any checkpoint: both fail before either is cancelled

    async with anyio.create_task_group() as tg:
        tg.start_soon(fail, StoreError("the bucket is gone"))
        tg.start_soon(fail, FlowError("the flow is broken"))


async def one_fails() -> None:
    raise StoreError("the bucket is gone")


def test_two_failures_at_once_are_both_said_and_the_first_sets_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_async(two_tasks_fail)
    said = " ".join(capsys.readouterr().err.split())
    assert "error: the bucket is gone" in said
    assert "error: the flow is broken" in said
    assert exit_.value.code == EXIT_STORE


def test_a_failure_outside_any_task_group_is_said_as_before(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_async(one_fails)
    assert "error: the bucket is gone" in capsys.readouterr().err
    assert exit_.value.code == EXIT_STORE


def test_a_bug_beside_an_asteps_error_keeps_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def bug_and_failure() -> None:
        async def fail(exc: Exception) -> None:
            raise exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(fail, StoreError("the bucket is gone"))
            tg.start_soon(fail, ZeroDivisionError("a bug"))

    with pytest.raises(ExceptionGroup) as info:
        run_async(bug_and_failure)
    assert info.group_contains(ZeroDivisionError)
    assert "error: the bucket is gone" in capsys.readouterr().err
