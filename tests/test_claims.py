"""Run once, even when callers race: single flight in a runner, and exclusive
steps across runners on every store (claims in asteps._claims). On asyncio and
on trio (S3 on asyncio alone: aioboto3 runs on asyncio only)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asteps import FileStore, MemoryStore, Runner, S3Store
from asteps._claims import Claims, Held
from asteps._decision import RAN_CONCURRENTLY
from asteps.errors import ClaimLost, ClaimsNotSupported, ResultMissing, StoreError
from asteps.stores.base import CLAIMS_ROOT

from .conftest import ASYNCIO_ONLY, CountingStore, each_store_on_each_backend

pytestmark = pytest.mark.anyio


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    each_store_on_each_backend(metafunc, "claims_store")


# -- single flight in one runner -------------------------------------------------


async def test_five_same_name_steps_gathered_in_one_runner_run_the_work_once(
    store: CountingStore,
) -> None:
    runner = Runner(store, "wf")
    runs: list[int] = []

    async def work() -> str:
        runs.append(1)
        await anyio.lowlevel.checkpoint()  # in flight while the others are submitted
        return "rows"

    outcomes: list[Any] = [None] * 5

    async def one(i: int) -> None:
        outcomes[i] = await runner.step("same", work)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert runs == [1]
    assert sorted(o.status for o in outcomes) == ["completed"] + ["skipped"] * 4
    for outcome in outcomes:
        assert outcome.result == "rows"
        if outcome.status == "skipped":
            assert outcome.reasons == (RAN_CONCURRENTLY,)
    assert store.calls["mark_done"] == 1


async def test_a_call_waiting_for_a_failed_one_decides_again_and_runs(
    store: CountingStore,
) -> None:
    runner = Runner(store, "wf")
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        await anyio.lowlevel.checkpoint()
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    outcomes: list[Any] = []

    async def one() -> None:
        outcomes.append(await runner.step("s", flaky))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    assert [o.status for o in outcomes] == ["failed", "completed"]
    assert len(attempts) == 2


async def test_a_call_waiting_for_a_cancelled_one_decides_again() -> None:
    runner = Runner(MemoryStore(), "wf", done=[])
    started = anyio.Event()

    async def hangs() -> None:
        started.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()

        async def cancelled() -> None:
            with first:
                await runner.step("s", hangs)

        tg.start_soon(cancelled)
        await started.wait()
        second: list[Any] = []

        async def waits() -> None:
            second.append(await runner.step("s", lambda: "second"))

        tg.start_soon(waits)
        await anyio.wait_all_tasks_blocked()
        first.cancel()
    assert second[0].status == "completed"
    assert second[0].result == "second"


# -- exclusive steps, on every store -------------------------------------------------


@pytest.fixture
async def claims_store(
    request: pytest.FixtureRequest, claims_store_kind: str, tmp_path: Path
) -> AsyncIterator[Any]:
    if claims_store_kind == "memory":
        yield MemoryStore()
    elif claims_store_kind == "file":
        yield FileStore(tmp_path)
    else:
        aws = request.getfixturevalue("aws")  # a clean moto server
        async with S3Store("steps", endpoint_url=aws.endpoint_url, session=aws.session()) as s3:
            await s3.client.create_bucket(Bucket="steps")
            yield s3


async def test_two_runners_racing_over_exclusive_steps_run_each_once(claims_store: Any) -> None:
    ran: list[str] = []

    def work(name: str) -> Any:
        async def run() -> str:
            ran.append(name)
            await anyio.sleep(0.01)
            return name

        return run

    async def flow(runner: Runner) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(runner.step, f"s{i}", work(f"s{i}"))

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(flow, Runner(claims_store, "wf", exclusive=True, lease=5.0))
    assert sorted(ran) == sorted(f"s{i}" for i in range(10))
    assert await claims_store.list_done("wf/steps/") == {f"s{i}" for i in range(10)}


class Watched:
    """A store as another runner sees it, telling when that runner first found
    the claim held (it read the claim's token)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.found_held = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def list_done(self, prefix: str) -> set[str]:
        return set(await self.store.list_done(prefix))

    async def mark_done(self, prefix: str, name: str, body: Any) -> None:
        await self.store.mark_done(prefix, name, body)

    async def unmark(self, prefix: str, names: Any) -> None:
        await self.store.unmark(prefix, names)

    async def read_marker(self, prefix: str, name: str) -> Any:
        return await self.store.read_marker(prefix, name)

    async def create_claim(self, prefix: str, name: str, body: Any) -> str | None:
        return await self.store.create_claim(prefix, name, body)  # type: ignore[no-any-return]

    async def read_claim(self, prefix: str, name: str) -> str | None:
        token = await self.store.read_claim(prefix, name)
        if token is not None:
            self.found_held.set()
        return token  # type: ignore[no-any-return]

    async def replace_claim(self, prefix: str, name: str, token: str, body: Any) -> str | None:
        return await self.store.replace_claim(prefix, name, token, body)  # type: ignore[no-any-return]

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        await self.store.delete_claim(prefix, name, token)


async def test_a_waiter_returns_the_winners_kept_result_without_running(claims_store: Any) -> None:
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    watched = Watched(claims_store)
    waiter = Runner(watched, "wf", exclusive=True, lease=5.0)  # type: ignore[arg-type]
    inside = anyio.Event()
    release = anyio.Event()

    async def slow() -> dict[str, int]:
        inside.set()
        await release.wait()
        return {"rows": 12}

    outcomes: dict[str, Any] = {}

    async def run(who: str, runner: Runner, work: Any) -> None:
        outcomes[who] = await runner.step("export", work, keep_result=True)

    async def never() -> None:
        raise AssertionError("the waiter must not run the step")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "holder", holder, slow)
        await inside.wait()
        tg.start_soon(run, "waiter", waiter, never)
        await watched.found_held.wait()  # it listed before the marker, and waits
        release.set()
    assert outcomes["holder"].status == "completed"
    assert outcomes["waiter"].status == "skipped"
    assert outcomes["waiter"].result == {"rows": 12}
    assert outcomes["waiter"].reasons == (f"Step was played by run {holder.run_id}", "result kept")


async def test_claims_live_where_no_listing_of_markers_sees_them(claims_store: Any) -> None:
    inside = anyio.Event()
    release = anyio.Event()

    async def slow() -> None:
        inside.set()
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(Runner(claims_store, "wf", exclusive=True).step, "a", slow)
        await inside.wait()
        assert await claims_store.read_claim("wf/steps/", "a") is not None
        assert await claims_store.list_done("wf/steps/") == set()
        release.set()
    assert await claims_store.read_claim("wf/steps/", "a") is None  # released


async def remove_claim(store: Any, prefix: str, name: str) -> None:
    """Remove a claim behind the back of its holder (an operator, a cleaner)."""
    key = CLAIMS_ROOT + prefix + name
    if isinstance(store, MemoryStore):
        del store._claims[prefix + name]
    elif isinstance(store, FileStore):
        (store.root / key).unlink()
    else:
        await store.client.delete_object(Bucket=store.bucket, Key=key)


async def test_a_claim_removed_under_its_holder_is_lost_at_its_renewal_and_left_to_the_next(
    claims_store: Any,
) -> None:
    clock = Clock()
    held = await claims(claims_store, clock, "holder").take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    await remove_claim(claims_store, "wf/steps/", "a")
    other = await claims(claims_store, clock, "other").take("wf/steps/", "a", forced=False)
    assert isinstance(other, Held)  # at once: nothing there
    assert not await held.renew(within=30.0)
    with pytest.raises(ClaimLost, match="or it was removed"):
        await held.check()
    await held.release()
    assert await claims_store.read_claim("wf/steps/", "a") is not None  # the other's, still
    assert await other.renew(within=30.0)
    await other.release()
    assert await claims_store.read_claim("wf/steps/", "a") is None


@ASYNCIO_ONLY
async def test_simpleflows_own_listing_shows_no_claim(
    s3: S3Store, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simpleflow.step.tasks import GetStepsDoneTask

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws.endpoint_url)
    await Runner(s3, "wf").step("done", lambda: None)
    inside = anyio.Event()
    release = anyio.Event()

    async def slow() -> None:
        inside.set()
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(Runner(s3, "wf", exclusive=True).step, "held", slow)
        await inside.wait()
        listed = await anyio.to_thread.run_sync(GetStepsDoneTask("steps", "wf/steps").execute)
        keys = await s3.client.list_objects_v2(Bucket="steps")
        release.set()
    assert sorted(listed) == ["done"]
    assert f"{CLAIMS_ROOT}wf/steps/held" in {k["Key"] for k in keys["Contents"]}


@ASYNCIO_ONLY
async def test_an_exclusive_step_costs_four_requests_and_a_done_one_none(s3: S3Store) -> None:
    runner = Runner(s3, "wf", exclusive=True)
    await runner.step("a", lambda: None)
    assert dict(s3.counter.calls) == {  # type: ignore[attr-defined]
        "ListObjectsV2": 1,  # the workflow's one listing
        "PutObject": 2,  # the claim (If-None-Match), the marker
        "GetObject": 1,  # the marker once more, after winning
        "DeleteObject": 1,  # the release (If-Match)
    }
    s3.counter.clear()  # type: ignore[attr-defined]
    await Runner(s3, "wf", exclusive=True).step("a", lambda: None)
    assert dict(s3.counter.calls) == {"ListObjectsV2": 1}  # type: ignore[attr-defined]


@ASYNCIO_ONLY
async def test_a_renewal_applied_but_whose_answer_was_lost_keeps_the_claim(flaky: Any) -> None:
    """A renewal whose connection dropped after S3 applied it is sent again
    (by aiohttp for a PUT on a kept-alive connection, else by botocore's
    retries), and the resend's If-Match on the old ETag fails (412).
    The holder reads its claim back and, finding what it wrote, holds on; a
    claim another runner rewrote is still lost."""
    async with S3Store("steps", endpoint_url=flaky.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        held = await Claims(store, 30.0, "holder", "wf").take("wf/steps/", "a", forced=False)
        assert isinstance(held, Held)
        flaky.drop_next(1, "PUT")
        assert await held.renew(within=30.0), held.lost
        assert flaky.dropped == 1
        key = f"{CLAIMS_ROOT}wf/steps/a"
        claim = await store.client.get_object(Bucket="steps", Key=key)
        assert json.loads(await claim["Body"].read())["renewals"] == 1
        assert held.token == claim["ETag"]
        assert await held.renew(within=30.0)  # the token it went on with is the claim's

        # Taken over meanwhile: the read-back finds another body, and the claim is lost.
        assert await store.replace_claim("wf/steps/", "a", held.token, {"run_id": "other"})
        assert not await held.renew(within=30.0)
        assert held.lost == "another runner took its claim over, or it was removed"


@ASYNCIO_ONLY
async def test_a_claim_created_but_whose_answer_was_lost_is_held_at_once(flaky: Any) -> None:
    """The same for the claim's creation: the resend's If-None-Match fails on
    the claim the first PUT created. Read as held by another runner, the
    runner waited a lease (60 s by default) for its own claim to go stale,
    then warned it took over a claim unchanged."""
    async with S3Store("steps", endpoint_url=flaky.endpoint_url) as store:
        await store.client.create_bucket(Bucket="steps")
        flaky.drop_next(1, "PUT")
        with anyio.fail_after(20):  # a lease of 30 s: only the bug waits so long
            held = await Claims(store, 30.0, "holder", "wf").take("wf/steps/", "a", forced=False)
        assert flaky.dropped == 1
        assert isinstance(held, Held)
        claim = await store.client.head_object(Bucket="steps", Key=f"{CLAIMS_ROOT}wf/steps/a")
        assert held.token == claim["ETag"]
        assert await held.renew(within=30.0)

        # Another runner's claim is still refused, the read-back finding its body.
        assert await store.create_claim("wf/steps/", "a", {"run_id": "other"}) is None


@ASYNCIO_ONLY
async def test_exclusive_off_adds_no_request(s3: S3Store) -> None:
    await Runner(s3, "wf").step("a", lambda: None)
    assert dict(s3.counter.calls) == {"ListObjectsV2": 1, "PutObject": 1}  # type: ignore[attr-defined]


@ASYNCIO_ONLY
async def test_a_step_can_opt_out_of_its_runners_exclusive(s3: S3Store) -> None:
    await Runner(s3, "wf", exclusive=True).step("a", lambda: None, exclusive=False)
    assert dict(s3.counter.calls) == {"ListObjectsV2": 1, "PutObject": 1}  # type: ignore[attr-defined]


async def test_a_store_without_claims_is_refused_for_exclusive_steps() -> None:
    class Minimal:
        async def list_done(self, prefix: str) -> set[str]:
            return set()

        async def mark_done(self, prefix: str, name: str, body: Any) -> None: ...

        async def unmark(self, prefix: str, names: Any) -> None: ...

    with pytest.raises(ClaimsNotSupported, match="cannot hold claims"):
        Runner(Minimal(), "wf", exclusive=True)  # type: ignore[arg-type]
    with pytest.raises(ClaimsNotSupported):
        await Runner(Minimal(), "wf").step("a", lambda: None, exclusive=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("lease", [0, -1, float("nan"), float("inf"), "60", True])
def test_a_lease_must_be_a_finite_number_of_seconds(lease: Any) -> None:
    with pytest.raises(ValueError, match="lease"):
        Runner(MemoryStore(), "wf", exclusive=True, lease=lease)


# -- the lease, on an injected clock --------------------------------------------------


class Clock:
    """A clock that moves only when a sleep is awaited: leases without real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def claims(store: Any, clock: Clock, run_id: str, lease: float = 30.0) -> Claims:
    return Claims(store, lease, run_id, "wf", clock=clock, sleep=clock.sleep)


async def test_a_claim_left_unchanged_for_a_lease_is_taken_over_by_one_waiter() -> None:
    store = MemoryStore()
    clock = Clock()
    dead = await claims(store, clock, "dead").take("wf/steps/", "a", forced=False)
    assert isinstance(dead, Held)  # and its holder never renews it: it died
    won: list[Any] = []

    async with anyio.create_task_group() as tg:

        async def wait(run_id: str) -> None:
            won.append(await claims(store, clock, run_id).take("wf/steps/", "a", forced=False))
            tg.cancel_scope.cancel()  # the first to win ends the race

        tg.start_soon(wait, "w1")
        tg.start_soon(wait, "w2")
    assert len(won) == 1
    assert isinstance(won[0], Held)
    assert clock.now >= 30.0  # not before a full lease, on the waiters' own clock
    assert store._claims["wf/steps/a"][1]["run_id"] in ("w1", "w2")


async def test_a_renewed_claim_is_never_taken_over() -> None:
    store = MemoryStore()
    clock = Clock()
    held = await claims(store, clock, "holder").take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    won: list[Any] = []

    async with anyio.create_task_group() as tg:

        async def wait() -> None:
            won.append(await claims(store, clock, "waiter").take("wf/steps/", "a", forced=False))

        tg.start_soon(wait)
        while clock.now < 300.0:  # ten leases
            assert await held.renew(within=30.0)
            await clock.sleep(10.0)
        tg.cancel_scope.cancel()
    assert won == []


async def test_a_holder_whose_renewal_is_refused_is_cancelled_and_does_not_mark() -> None:
    store = MemoryStore()
    clock = Clock()
    runner = Runner(store, "wf", exclusive=True, lease=30.0)
    inside = anyio.Event()
    cancelled: list[bool] = []

    async def work() -> None:
        inside.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async def steal() -> None:
        await inside.wait()
        token = await store.read_claim("wf/steps/", "a")
        assert token is not None
        assert await store.replace_claim("wf/steps/", "a", token, {"run_id": "thief"})

    runner._claims = lambda s: claims(s, clock, runner.run_id)  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(steal)
        outcome = await runner.step("a", work)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, ClaimLost)
    assert cancelled == [True]
    assert await store.list_done("wf/steps/") == set()


async def test_a_holder_that_cannot_renew_in_time_does_not_mark() -> None:
    store = MemoryStore()
    clock = Clock()
    held = await claims(store, clock, "holder").take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    clock.now += 25.0  # paused past lease - margin, and the claim was taken meanwhile
    token = await store.read_claim("wf/steps/", "a")
    assert token is not None
    await store.replace_claim("wf/steps/", "a", token, {"run_id": "other"})
    with pytest.raises(ClaimLost, match="took its claim over"):
        await held.check()


class PartitionedStore(MemoryStore):
    """Creates claims, then never answers a renewal: a holder cut off from S3."""

    async def replace_claim(self, prefix: str, name: str, token: str, body: Any) -> str | None:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_holder_cut_off_from_the_store_stops_its_work_when_the_lease_could_expire() -> None:
    # Before, a renewal waited as long as the store's client did (minutes of
    # retries), and the work went on after another runner could have taken over.
    store = PartitionedStore()
    runner = Runner(store, "wf", exclusive=True, lease=0.3)
    cancelled: list[bool] = []

    async def work() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    with anyio.fail_after(30):  # only a hang reaches this
        outcome = await runner.step("a", work)
    assert outcome.status == "failed"
    assert isinstance(outcome.error, ClaimLost)
    assert "did not answer" in str(outcome.error)
    assert cancelled == [True]
    assert await store.list_done("wf/steps/") == set()


class PartitionTimer(MemoryStore):
    """A renewal that never answers, and how long the holder waited for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited_at_most: list[float] = []

    async def replace_claim(self, prefix: str, name: str, token: str, body: Any) -> str | None:
        self.waited_at_most.append(anyio.current_effective_deadline() - anyio.current_time())
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_holder_cut_off_stops_its_work_a_third_of_a_lease_before_a_takeover() -> None:
    # It waited for a renewal until the lease could expire, the very moment a
    # waiter may take over: the cancelled work had no time left to stop.
    store = PartitionTimer()
    clock = Clock()
    held = await claims(store, clock, "holder", lease=3.0).take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    work = anyio.CancelScope()
    with anyio.fail_after(30):  # only a hang reaches this: the wait is 1 s of real time
        await held.keep(work)  # its sleep (1 s of the clock) is the fake clock's
    assert work.cancel_called
    assert clock.now == 1.0  # renewed at a third of the lease
    (waited,) = store.waited_at_most
    assert 0 < waited <= 1.0  # until 2 s of a 3 s lease, not 3
    assert "while a third of the lease was left" in (held.lost or "")


class FailingRenewals(MemoryStore):
    """Renewals that fail with a store error (``failures`` of them, then they
    succeed), each answering after ``takes`` seconds of ``clock``; and every
    claim request yields, as a real store's would."""

    def __init__(self, clock: Clock, failures: int, takes: float = 1.0) -> None:
        super().__init__()
        self.clock = clock
        self.failures = failures
        self.takes = takes
        self.renewals: list[str] = []  # "failed" or "renewed", in order

    async def replace_claim(self, prefix: str, name: str, token: str, body: Any) -> str | None:
        await anyio.lowlevel.checkpoint()
        self.clock.now += self.takes
        if self.failures:
            self.failures -= 1
            self.renewals.append("failed")
            raise StoreError("renew a claim in ...: 503 Slow Down", prefix=prefix)
        self.renewals.append("renewed")
        return await super().replace_claim(prefix, name, token, body)


async def keep_for(held: Held, clock: Clock, seconds: float) -> anyio.CancelScope:
    """Run ``held.keep`` until ``clock`` passed ``seconds`` (or the claim is
    lost): the scope it would cancel on a loss (the step's work)."""
    work = anyio.CancelScope()
    with anyio.CancelScope() as keeping:

        async def sleep(pause: float) -> None:
            if clock.now >= seconds:
                keeping.cancel()
            await clock.sleep(pause)

        held.claims.sleep = sleep
        await held.keep(work)
    return work


async def test_one_failed_renewal_is_retried_before_the_claim_is_no_longer_safe() -> None:
    # A renewal that failed was retried a full third of a lease later, after the
    # moment the claim stopped being safe: one store error cost the claim.
    clock = Clock()
    store = FailingRenewals(clock, failures=1)
    held = await claims(store, clock, "holder").take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    work = await keep_for(held, clock, seconds=120.0)  # four leases
    assert not work.cancel_called
    assert held.lost is None
    assert store.renewals[0] == "failed"
    assert set(store.renewals[1:]) == {"renewed"}  # then every third of a lease, as before
    assert len(store.renewals) > 10
    assert held.safe()


async def test_a_claim_lost_to_store_errors_is_released_for_the_next_runner() -> None:
    # It was never released (a lost claim was taken to be another's): the
    # next runner waited a whole lease for it to go stale, the store
    # reachable again all the while.
    clock = Clock()
    store = FailingRenewals(clock, failures=1_000)
    runner = Runner(store, "wf", exclusive=True, lease=30.0)
    runner._claims = lambda s: claims(s, clock, runner.run_id)  # type: ignore[method-assign]

    async def work() -> None:
        await anyio.sleep_forever()

    outcome = await runner.step("a", work)
    assert isinstance(outcome.error, ClaimLost)
    assert "could not be renewed" in str(outcome.error)
    assert "503 Slow Down" in str(outcome.error)
    assert await store.read_claim("wf/steps/", "a") is None  # released: nobody waits
    store.failures = 0
    again = await Runner(store, "wf", exclusive=True, lease=30.0).step("a", lambda: "ran")
    assert (again.status, again.result) == ("completed", "ran")


class CountedRelease(MemoryStore):
    """A store that counts the releases tried."""

    def __init__(self) -> None:
        super().__init__()
        self.releases = 0

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        self.releases += 1
        await super().delete_claim(prefix, name, token)


class PartitionedRelease(CountedRelease, PartitionedStore):
    """Never answers a renewal (a partition), and counts the releases tried."""


async def test_a_claim_lost_to_a_store_that_did_not_answer_is_not_released() -> None:
    # A partitioned holder would wait another third of a lease for its release.
    store = PartitionedRelease()
    clock = Clock()
    held = await claims(store, clock, "holder", lease=3.0).take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    with anyio.fail_after(30):  # only a hang reaches this: the wait is 1 s of real time
        await held.keep(anyio.CancelScope())
    await held.release()
    assert "did not answer" in (held.lost or "")
    assert store.releases == 0


async def test_a_claim_taken_over_is_not_released() -> None:
    store = CountedRelease()
    clock = Clock()
    held = await claims(store, clock, "holder").take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    clock.now += 25.0
    token = await store.read_claim("wf/steps/", "a")
    assert token is not None
    assert await store.replace_claim("wf/steps/", "a", token, {"run_id": "other"})
    with pytest.raises(ClaimLost, match="took its claim over"):
        await held.check()
    await held.release()
    assert store.releases == 0
    assert store._claims["wf/steps/a"][1]["run_id"] == "other"


async def test_a_holder_whose_claim_file_is_removed_stops_at_its_next_renewal(
    tmp_path: Path,
) -> None:
    # Its lock stayed on the removed file, which no other runner sees: another
    # runner created a claim at the path, and both held the step for good.
    clock = Clock()
    claim = tmp_path / CLAIMS_ROOT / "wf" / "steps" / "a"
    holder = claims(FileStore(tmp_path), clock, "holder")
    held = await holder.take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    claim.unlink()  # a tmp cleaner
    work = await keep_for(held, clock, seconds=60.0)
    assert work.cancel_called
    assert clock.now == 10.0  # at its next renewal
    assert "removed" in (held.lost or "")
    await held.release()
    other = await claims(FileStore(tmp_path), clock, "other").take("wf/steps/", "a", forced=False)
    assert isinstance(other, Held)
    assert json.loads(claim.read_text())["run_id"] == "other"


class UnansweredRelease(MemoryStore):
    """A store that stops answering once the claim is taken: its release hangs."""

    def __init__(self) -> None:
        super().__init__()
        self.release_cut_short = anyio.Event()

    async def delete_claim(self, prefix: str, name: str, token: str) -> None:
        try:
            await anyio.sleep(20)  # a partition, and the client's retries (minutes)
        except anyio.get_cancelled_exc_class():
            self.release_cut_short.set()
            raise


async def test_a_cancelled_step_waits_for_its_claims_release_a_third_of_a_lease_at_most() -> None:
    # The release was shielded with no bound: a runner cancelled during a
    # partition (Ctrl-C) waited out the store client's retries, minutes.
    store = UnansweredRelease()
    runner = Runner(store, "wf", exclusive=True, lease=0.3)
    started = anyio.Event()

    async def work() -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.move_on_after(3600) as outer:  # the step is cancelled from outside
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.step, "a", work)
            await started.wait()
            tg.cancel_scope.cancel()
    assert not outer.cancelled_caught
    assert store.release_cut_short.is_set()
    assert await store.list_done("wf/steps/") == set()


class StuckReading(Watched):
    """A store whose marker read, once the claim is won, never answers."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.reading = anyio.Event()

    async def read_marker(self, prefix: str, name: str) -> Any:
        self.reading.set()
        await anyio.sleep_forever()


async def test_a_step_cancelled_right_after_winning_its_claim_releases_it(
    claims_store: Any,
) -> None:
    # Before, a cancellation during the marker's read after the claim was won
    # left the claim held: on the FileStore its lock stayed taken as long as
    # the process lived, and every other runner waited for it forever.
    stuck = StuckReading(claims_store)
    runner = Runner(stuck, "wf", exclusive=True, lease=5.0)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.step, "a", lambda: None)
        await stuck.reading.wait()
        tg.cancel_scope.cancel()
    assert await claims_store.read_claim("wf/steps/", "a") is None
    with anyio.fail_after(30):  # only a claim never released reaches this
        outcome = await Runner(claims_store, "wf", exclusive=True, lease=5.0).step("a", lambda: 1)
    assert outcome.status == "completed"


class MarkedWhileRefused(Watched):
    """A store whose first refused claim answers only once the holder's step
    has ended: the holder marks the step between the refusal and the look at
    its marker that follows."""

    def __init__(self, store: Any, finish: anyio.Event, holder_done: anyio.Event) -> None:
        super().__init__(store)
        self.finish, self.holder_done = finish, holder_done

    async def create_claim(self, prefix: str, name: str, body: Any) -> str | None:
        token = await self.store.create_claim(prefix, name, body)
        if token is None and not self.finish.is_set():
            self.finish.set()
            await self.holder_done.wait()
        return token  # type: ignore[no-any-return]


async def test_a_forced_step_that_found_the_claim_held_is_skipped_once_the_holder_marks_it(
    claims_store: Any,
) -> None:
    # Before, the forced waiter took the run id to compare with from its first
    # look at the marker, after its claim was refused: a holder that marked in
    # between went unseen, and the step ran a second time once it was released.
    finish, holder_done, inside = anyio.Event(), anyio.Event(), anyio.Event()
    ran: list[str] = []
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    racing = MarkedWhileRefused(claims_store, finish, holder_done)
    waiter = Runner(racing, "wf", exclusive=True, lease=5.0)  # type: ignore[arg-type]
    for runner in (holder, waiter):
        runner.add_forced_steps("a", reason="rerun asked twice")

    async def holding() -> None:
        ran.append("holder")
        inside.set()
        await finish.wait()

    async def play_holder() -> None:
        await holder.step("a", holding)
        holder_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(play_holder)
        await inside.wait()
        with anyio.fail_after(30):  # only a hang reaches this
            outcome = await waiter.step("a", lambda: ran.append("waiter"))
    assert ran == ["holder"]
    assert outcome.status == "skipped"
    assert outcome.reasons == (f"Step was played by run {holder.run_id}",)


async def test_a_forced_exclusive_step_rewrites_a_marker_whose_body_is_broken(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    (tmp_path / "wf" / "steps").mkdir(parents=True)
    (tmp_path / "wf" / "steps" / "a").write_text("not json")
    runner = Runner(store, "wf", exclusive=True, lease=5.0)
    runner.add_forced_steps("a", reason="repair")
    outcome = await runner.step("a", lambda: "fixed")
    assert outcome.status == "completed"
    assert (await store.read_marker("wf/steps/", "a") or {})["run_id"] == runner.run_id


# -- a step played by another runner is reconsidered as a done step would be ------


async def _waiter_after_holder(
    store: Any, holder: Runner, waiter: Runner, **options: Any
) -> tuple[Any, list[str]]:
    """The holder plays "export" (keeping no result) while the waiter, which
    found the claim held, waits; the waiter's outcome and who ran the work."""
    watched = Watched(store)
    waiter.store = watched  # type: ignore[assignment]
    inside, release = anyio.Event(), anyio.Event()
    ran: list[str] = []

    async def slow() -> None:
        ran.append("holder")
        inside.set()
        await release.wait()

    async def again() -> dict[str, int]:
        ran.append("waiter")
        return {"rows": 3}

    outcome: Any = None

    async def wait() -> None:
        nonlocal outcome
        outcome = await waiter.step("export", again, **options)

    with anyio.fail_after(30):  # only a hang reaches this
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.step, "export", slow)
            await inside.wait()
            tg.start_soon(wait)
            await watched.found_held.wait()
            release.set()
    return outcome, ran


async def test_a_waiter_that_keeps_results_runs_a_step_played_without_one(
    claims_store: Any,
) -> None:
    # Before, it was skipped with None as result: on_missing_result="run" (the
    # default) was ignored for a step another runner played meanwhile.
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    waiter = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    outcome, ran = await _waiter_after_holder(claims_store, holder, waiter, keep_result=True)
    assert ran == ["holder", "waiter"]
    assert outcome.status == "completed"
    assert outcome.forced
    assert outcome.reasons == ("result missing",)
    assert outcome.result == {"rows": 3}
    assert (await claims_store.read_marker("wf/steps/", "export"))["result"] == {"rows": 3}


async def test_a_waiter_with_on_missing_result_none_skips_with_the_problem_as_reason(
    claims_store: Any,
) -> None:
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    waiter = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    outcome, ran = await _waiter_after_holder(
        claims_store, holder, waiter, keep_result=True, on_missing_result="none"
    )
    assert ran == ["holder"]
    assert outcome.status == "skipped"
    assert outcome.result is None
    assert outcome.reasons == (f"Step was played by run {holder.run_id}", "result missing")


async def test_a_waiter_with_on_missing_result_error_fails(claims_store: Any) -> None:
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    waiter = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    outcome, ran = await _waiter_after_holder(
        claims_store, holder, waiter, keep_result=True, on_missing_result="error"
    )
    assert ran == ["holder"]
    assert outcome.status == "failed"
    assert isinstance(outcome.error, ResultMissing)


async def test_a_waiter_on_a_new_version_runs_a_step_played_by_an_older_one(
    claims_store: Any,
) -> None:
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0, version="1")
    waiter = Runner(claims_store, "wf", exclusive=True, lease=5.0, version="2")
    outcome, ran = await _waiter_after_holder(
        claims_store, holder, waiter, rerun_on_new_version=True
    )
    assert ran == ["holder", "waiter"]
    assert outcome.status == "completed"
    assert outcome.reasons == ("version 1 -> 2",)
    assert (await claims_store.read_marker("wf/steps/", "export"))["version"] == "2"


@pytest.mark.parametrize("keep", [True, False], ids=["keeps", "keeps-none"])
async def test_a_step_played_elsewhere_whose_marker_is_broken_is_judged_as_a_done_one(
    tmp_path: Path, keep: bool
) -> None:
    # Its marker's body, written while the waiter waited, is not JSON: a done
    # step's would be "result invalid" (rerun, for a step that keeps results),
    # or not read at all; this one's MarkerBodyError came out of runner.step,
    # whatever on_missing_result or bubbles said.
    store = FileStore(tmp_path)
    held = await Claims(store, 5.0, "holder", "wf").take("wf/steps/", "a", forced=False)
    assert isinstance(held, Held)
    waiter = Runner(store, "wf", exclusive=True, lease=5.0)
    watched = Watched(store)
    waiter.store = watched  # type: ignore[assignment]
    outcome: Any = None

    async def wait() -> None:
        nonlocal outcome
        with anyio.fail_after(30):  # only a hang reaches this
            outcome = await waiter.step("a", lambda: "mine", keep_result=keep)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await watched.found_held.wait()
        (tmp_path / "wf" / "steps").mkdir(parents=True)
        (tmp_path / "wf" / "steps" / "a").write_text("not json")
        await held.release()
    if keep:
        assert outcome.status == "completed"
        assert outcome.forced
        assert outcome.reasons[0].startswith("result invalid: marker ")
        assert (await store.read_marker("wf/steps/", "a") or {})["result"] == "mine"
    else:
        assert outcome.status == "skipped"
        assert outcome.reasons == ("Step was played by another run",)


async def test_a_step_played_elsewhere_runs_its_alternative_as_a_done_one_does(
    claims_store: Any,
) -> None:
    # A skipped step runs activities_if_step_already_done and, keeping no
    # result, returns what it returns: simpleflow's way to load a done step's
    # output. Played by another runner meanwhile, the step skipped it and
    # returned None, the bug fixed above for kept results.
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    waiter = Runner(claims_store, "wf", exclusive=True, lease=5.0)
    loaded: list[str] = []

    async def load() -> dict[str, int]:
        loaded.append("waiter")
        return {"rows": 12}

    outcome, ran = await _waiter_after_holder(
        claims_store, holder, waiter, activities_if_step_already_done=load
    )
    assert ran == ["holder"]
    assert loaded == ["waiter"]
    assert outcome.status == "skipped"
    assert outcome.result == {"rows": 12}
    assert outcome.reasons == (f"Step was played by run {holder.run_id}",)


async def test_a_waiter_on_a_new_version_fails_as_a_done_step_for_a_missing_result_with_error(
    claims_store: Any,
) -> None:
    # on_missing_result="error" fails a done step whose result is missing even
    # when its version would rerun it; played elsewhere, the step ran instead.
    holder = Runner(claims_store, "wf", exclusive=True, lease=5.0, version="1")
    waiter = Runner(claims_store, "wf", exclusive=True, lease=5.0, version="2")
    outcome, ran = await _waiter_after_holder(
        claims_store,
        holder,
        waiter,
        keep_result=True,
        rerun_on_new_version=True,
        on_missing_result="error",
    )
    assert ran == ["holder"]
    assert outcome.status == "failed"
    assert isinstance(outcome.error, ResultMissing)
    assert outcome.reasons == ("version 1 -> 2",)


async def test_a_forced_waiter_that_found_a_broken_marker_waits_for_the_holder(
    tmp_path: Path,
) -> None:
    # Before, the waiter read the broken marker it had found before trying the
    # claim as if it were new, and raised MarkerBodyError out of runner.step.
    store = FileStore(tmp_path)
    (tmp_path / "wf" / "steps").mkdir(parents=True)
    (tmp_path / "wf" / "steps" / "export").write_text("not json")
    holder = Runner(store, "wf", exclusive=True, lease=5.0)
    waiter = Runner(store, "wf", exclusive=True, lease=5.0)
    for runner in (holder, waiter):
        runner.add_forced_steps("export", reason="repair")
    outcome, ran = await _waiter_after_holder(store, holder, waiter)
    assert ran == ["holder"]
    assert outcome.status == "skipped"
    assert outcome.reasons == (f"Step was played by run {holder.run_id}",)
