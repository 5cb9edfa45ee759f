"""Scale: a big batch at the store's limit, its memory, how fast Ctrl-C stops
it, and a long batch over real HTTP.

1. batch: 200,000 workflows of 5 steps, all done, through ``BatchRun`` (fed
   by a generator of ids) over a LatencyStore (exponential latency, mean
   20 ms, C = 256 calls in flight; batch concurrency 256). All done is the
   big rerun's realistic case: one listing per workflow, every step skipped.
   The rate is compared, as in batch_latency.py (bench/_batches.py), with
   min(C / L, the CPU-bound rate), the CPU-bound rate measured in the same
   process on the same store at L = 0. It runs in a child process of its
   own; its peak RSS growth is the kernel's high-water mark (VmHWM, reset
   just before the batch) less the RSS just before it, the store filled.
   Goal: rate / cap >= 0.9. Also shown: the CPU time per workflow of the two
   runs, whose ratio hardly depends on the machine's load (where the cap is
   the CPU-bound rate, it is the ratio a quiet machine would give).
   ``--none-done`` adds the same batch with no step done (a listing and
   five writes each, limit C / (6 L); its growth includes the 1,000,000
   markers written): not in ``make bench``.
2. interrupt: ``asteps rerun --all`` (the CLI, a subprocess with a terminal
   on stderr, as a user runs it) over a FileStore of 50,000 workflows, each
   holding one marker of another step, flow ``five_steps`` (bench/flows.py):
   every workflow lists and writes five markers, so a stop finds writes in
   flight. The store is on tmpfs (/dev/shm) where there is one: 150,000
   directories and files take seconds to make there, minutes on this
   machine's shared disk, whose fsyncs would be measured too. Once its
   progress bar shows 1,000 workflows done, SIGINT; the time is from the
   signal to the exit. Then again, with a
   second SIGINT as soon as the first is acknowledged on stderr, timed from
   the second. Goals: <= 5 s; the second <= 1 s. The retry file (and a
   resume point, where the CLI writes one) must be there after either.
3. s3: ``asteps rerun --ids FILE`` over moto (its own process) behind a
   LatencyProxy (20 ms per request, its own process), 20,000 workflows of
   5 steps, as a dry run over an empty bucket: one ListObjectsV2 per
   workflow, nothing written. (moto scans every key of the bucket for each
   listing, 62 ms a listing at 20,000 keys, so a filled bucket would measure
   moto; its floor, about 7 ms a request, still makes it the limit.) The
   reference is raw aioboto3 listing the first 1,000 of the same prefixes
   through the same proxy at the same concurrency, just before.

The report goes to bench/results/scale.txt as printed.

    .venv/bin/python bench/scale.py [--workflows 200000] [--interrupt-workflows 50000]
        [--s3-workflows 20000] [--parts batch,interrupt,s3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import pty
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from asteps import MemoryStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _batches import batch, fill, limit
from _servers import moto_process, proxy_process
from s3_batch import BENCH, LATENCY, asteps_rerun, raw_lists

RESULTS = BENCH / "results"
ASTEPS = str(Path(sys.executable).parent / "asteps")
PARTS = ("batch", "interrupt", "s3")
WORKLOADS = {"all-done": "all done (one listing each)", "none-done": "none done (6 calls each)"}
LIMITS = {"all-done": "C / L", "none-done": "C / (6 L)"}

GOAL_RATIO = 0.9
GOAL_STOP_S = 5.0
GOAL_SECOND_STOP_S = 1.0

BATCH_CONCURRENCY = 256
BATCH_LATENCY = 0.020
INTERRUPT_CONCURRENCY = 256
INTERRUPT_AFTER = 1_000  # workflows done before the SIGINT
S3_CONCURRENCY = 64  # as s3_batch.py: moto is the limit long before C / L
S3_RAW_SAMPLE = 1_000


# -- 1. the big batch, in a child process -----------------------------------------


def status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Set the kernel's RSS high-water mark (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


async def batch_child(n: int, workload: str) -> dict[str, float]:
    """In the child: fill the store (all done), then the batch at L = 20 ms
    (its RSS growth and CPU time measured), then at L = 0 (its CPU time) on
    the same store (a new empty one, none done)."""

    def ids() -> Iterator[str]:
        return (f"w{i:06d}" for i in range(n))

    inner = MemoryStore()
    started = time.perf_counter()
    if workload == "all-done":
        await fill(inner, ids())
    filled = time.perf_counter() - started
    gc.collect()
    before = status_kb("VmRSS")
    reset_peak_rss()
    c = BATCH_CONCURRENCY
    cpu = time.process_time()
    summary = await batch(inner, workload, c, BATCH_LATENCY, "exponential", ids(), n)
    cpu_s = time.process_time() - cpu
    growth = status_kb("VmHWM") - before
    if workload == "none-done":
        inner = MemoryStore()
    cpu = time.process_time()
    bound = await batch(inner, workload, c, 0.0, "constant", ids(), n)
    bound_cpu_s = time.process_time() - cpu
    return {
        "fill_s": filled,
        "store_rss": before,
        "rss_growth": growth,
        "rate": n / summary.elapsed,
        "cpu_bound": n / bound.elapsed,
        "cpu_s": cpu_s,
        "bound_cpu_s": bound_cpu_s,
    }


def batch_part(n: int, say: Callable[[str], None], workload: str = "all-done") -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, __file__, "--batch-child", str(n), "--workload", workload],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(child.stdout)
    lim = limit(workload, BATCH_CONCURRENCY, BATCH_LATENCY)
    cap = min(lim, got["cpu_bound"])
    ratio = got["rate"] / cap
    bound_by = LIMITS[workload] if lim <= got["cpu_bound"] else "the CPU-bound rate"
    verdict = "ok" if ratio >= GOAL_RATIO else "UNDER GOAL"
    say(
        f"1. BatchRun, {n:,} workflows x 5 steps, {WORKLOADS[workload]}, LatencyStore "
        f"exponential mean {BATCH_LATENCY * 1000:.0f} ms, C = {BATCH_CONCURRENCY}"
    )
    say(f"  rate                              : {got['rate']:8,.0f} workflows/s")
    say(f"  limit {LIMITS[workload]:27} : {lim:8,.0f} workflows/s")
    say(f"  CPU-bound rate (L = 0)            : {got['cpu_bound']:8,.0f} workflows/s")
    say(f"  ratio rate / min(limit, CPU-bound): {ratio:8.2f}   (goal >= {GOAL_RATIO}, {verdict})")
    say(f"    (the cap is {bound_by})")
    # CPU seconds depend far less on the machine's load than wall time: where
    # the cap is the CPU-bound rate, their ratio is what the rates' would be
    # on a quiet machine.
    by_cpu = got["bound_cpu_s"] / got["cpu_s"]
    say(f"  CPU time per workflow, L = 0 / L  : {by_cpu:8.2f}   (the ratio, load aside)")
    say(
        f"    ({got['cpu_s'] * 1e6 / n:,.0f} us at L = {BATCH_LATENCY * 1000:.0f} ms, "
        f"{got['bound_cpu_s'] * 1e6 / n:,.0f} us at L = 0)"
    )
    say(f"  peak RSS growth during the batch  : {got['rss_growth'] / 2**20:8.1f} MB")
    if workload == "all-done":
        say(
            f"    (store of {n * 5:,} markers filled before: RSS "
            f"{got['store_rss'] / 2**20:,.0f} MB, in {got['fill_s']:.0f} s)"
        )
    else:
        say(f"    (the {n * 5:,} markers the batch writes included)")
    return {
        "workload": workload,
        "workflows": n,
        "concurrency": BATCH_CONCURRENCY,
        "latency_ms": BATCH_LATENCY * 1000,
        "rate": round(got["rate"], 1),
        "limit": lim,
        "cpu_bound": round(got["cpu_bound"], 1),
        "ratio_to_cap": round(ratio, 3),
        "cpu_us_per_workflow": round(got["cpu_s"] * 1e6 / n, 1),
        "cpu_bound_cpu_us_per_workflow": round(got["bound_cpu_s"] * 1e6 / n, 1),
        "ratio_by_cpu_time": round(by_cpu, 3),
        "rss_growth_mb": round(got["rss_growth"] / 2**20, 1),
        "store_rss_mb": round(got["store_rss"] / 2**20, 1),
    }


# -- 2. Ctrl-C of asteps rerun --all ------------------------------------------------

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DONE = re.compile(r"workflows\D*(\d+)/")  # the bar's "1234/?" (no total with --all)


def build_file_store(root: Path, n: int) -> None:
    """``n`` workflow directories, each with one marker (``only``), written
    straight to disk: no fsync, no rename (the CLI's own writes come later)."""
    body = json.dumps({"run_id": "r"})
    for i in range(n):
        steps = root / f"customer-{i:05d}" / "steps"
        steps.mkdir(parents=True)
        (steps / "only").write_text(body)


class Terminal:
    """A pseudo-terminal for a child's stderr, read by a thread: the text so
    far (escapes removed) and events when it shows what is waited for."""

    def __init__(self) -> None:
        self.parent_fd, self.child_fd = pty.openpty()
        self.text = ""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.parent_fd, 65536)
            except OSError:  # the child closed its end (EIO)
                data = b""
            with self._changed:
                if not data:
                    self.text += "\0"  # the end
                    self._changed.notify_all()
                    return
                self.text += _ESCAPES.sub("", data.decode("utf-8", "replace"))
                self._changed.notify_all()

    def wait_for(self, found: Callable[[str], bool], timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: found(self.text) or "\0" in self.text, timeout):
                raise RuntimeError(f"waited {timeout} s; the child's stderr:\n{self.text[-2000:]}")
            if not found(self.text):
                raise RuntimeError(f"the child ended first; its stderr:\n{self.text[-2000:]}")

    def close(self) -> None:
        os.close(self.child_fd)
        self._thread.join(timeout=5)
        os.close(self.parent_fd)


def done_so_far(text: str) -> int:
    counts = _DONE.findall(text)
    return int(counts[-1]) if counts else 0


def interrupt_once(store: Path, workdir: Path, second: bool) -> dict[str, Any]:
    """One ``asteps rerun --all``, interrupted once (or twice) after
    INTERRUPT_AFTER workflows; the seconds to its exit and what it left."""
    workdir.mkdir()
    terminal = Terminal()
    child = subprocess.Popen(
        [
            ASTEPS,
            "rerun",
            f"{BENCH / 'flows.py'}:five_steps",
            "--all",
            "--store",
            f"file://{store}",
            "--concurrency",
            str(INTERRUPT_CONCURRENCY),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=terminal.child_fd,
        cwd=workdir,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"},
        text=True,
    )
    try:
        terminal.wait_for(lambda text: done_so_far(text) >= INTERRUPT_AFTER, timeout=120)
        seen = len(terminal.text)
        child.send_signal(signal.SIGINT)
        first = timed_from = time.perf_counter()
        if second:
            terminal.wait_for(lambda text: "interrupted" in text[seen:], timeout=30)
            child.send_signal(signal.SIGINT)
            timed_from = time.perf_counter()
        out, _ = child.communicate(timeout=120)
        ended = time.perf_counter()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        terminal.close()
    summary = json.loads(out)
    retry = sorted(workdir.glob("asteps-unfinished-*.txt"))
    retried = len(retry[0].read_text().splitlines()) if retry else 0
    resume = [p.name for p in workdir.iterdir() if "resume" in p.name.lower()]
    resume += [k for k in summary if "resume" in k.lower()]
    return {
        "seconds": round(ended - timed_from, 3),
        "from_first_s": round(ended - first, 3),
        "exit_code": child.returncode,
        "finished": summary["workflows"]["finished"],
        "unfinished": summary["workflows"]["unfinished"],
        "retry_file_ids": retried if retry else None,
        "resume_point": resume or None,
        "stopped_at": summary.get("stopped_at"),
    }


def interrupt_part(n: int, say: Callable[[str], None]) -> dict[str, Any]:
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="asteps-scale-", dir=shm) as tmp:
        store = Path(tmp) / "store"
        started = time.perf_counter()
        build_file_store(store, n)
        built = time.perf_counter() - started
        once = interrupt_once(store, Path(tmp) / "once", second=False)
        twice = interrupt_once(store, Path(tmp) / "twice", second=True)
    say(
        f"2. Ctrl-C of asteps rerun --all over a FileStore of {n:,} workflows (built in "
        f"{built:.0f} s, in {Path(tmp).parent}), flow five_steps (5 writes each), --concurrency "
        f"{INTERRUPT_CONCURRENCY}, SIGINT once {INTERRUPT_AFTER:,} were done"
    )
    for label, run, goal in (
        ("SIGINT to exit", once, GOAL_STOP_S),
        ("second SIGINT to exit", twice, GOAL_SECOND_STOP_S),
    ):
        verdict = "ok" if run["seconds"] <= goal else "OVER GOAL"
        say(f"  {label:33} : {run['seconds']:8.2f} s   (goal <= {goal:.0f} s, {verdict})")
        if run is twice:
            say(f"    (the first SIGINT to exit: {run['from_first_s']:.2f} s)")
        retry = run["retry_file_ids"]
        wrote = "not written" if retry is None else f"{retry:,} ids"
        resume = "not written" if run["resume_point"] is None else ", ".join(run["resume_point"])
        say(
            f"    exit {run['exit_code']}, {run['finished']:,} finished, "
            f"{run['unfinished']:,} unfinished; retry file: {wrote}; resume point: {resume}"
        )
    return {"workflows": n, "build_s": round(built, 1), "once": once, "twice": twice}


# -- 3. a long batch over real HTTP ---------------------------------------------------


def s3_part(n: int, say: Callable[[str], None]) -> dict[str, Any]:
    ids = [f"customer-{i:05d}" for i in range(n)]
    with moto_process() as moto, proxy_process(moto, LATENCY) as proxy:
        asyncio.run(create_bucket(moto))
        sample = ids[:S3_RAW_SAMPLE]
        raw = asyncio.run(raw_lists(proxy, sample, S3_CONCURRENCY, expected_keys=0))
        with tempfile.TemporaryDirectory() as tmp:
            ids_file = Path(tmp) / "ids.txt"
            ids_file.write_text("".join(f"{wid}\n" for wid in ids))
            summary = asteps_rerun(
                proxy, ids_file, S3_CONCURRENCY, flow="five_steps", extra=("--dry-run",)
            )
    assert summary["steps"] == {"would run": n * 5}, summary["steps"]
    rate = float(summary["workflows"]["succeeded"]) / float(summary["elapsed"])
    say(
        f"3. asteps rerun --ids FILE --dry-run, {n:,} workflows x 5 steps, moto behind a "
        f"LatencyProxy ({LATENCY * 1000:.0f} ms), concurrency {S3_CONCURRENCY}, empty bucket"
    )
    say(f"  limit C / L (the proxy's)         : {S3_CONCURRENCY / LATENCY:8,.0f} /s")
    say(f"  raw list_objects_v2 (first {len(sample):,}) : {raw:8,.0f} /s   (moto's own limit)")
    say(f"  asteps rerun (workflows)          : {rate:8,.0f} /s")
    say(f"  ratio asteps / raw                : {rate / raw:8.2f}")
    say(f"  elapsed                           : {float(summary['elapsed']):8.0f} s")
    return {
        "workflows": n,
        "concurrency": S3_CONCURRENCY,
        "raw_per_s": round(raw, 1),
        "asteps_per_s": round(rate, 1),
        "ratio": round(rate / raw, 3),
        "elapsed_s": float(summary["elapsed"]),
    }


async def create_bucket(endpoint: str) -> None:
    from asteps import S3Store
    from asteps.testing import MotoServer

    session = MotoServer(endpoint).session()
    async with S3Store("bench", endpoint_url=endpoint, session=session) as store:
        await store.client.create_bucket(Bucket="bench")


# -- the report -----------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown parts {sorted(unknown)}: choose among {', '.join(PARTS)}")
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    results: dict[str, Any] = {}

    def none_done(n: int, say: Callable[[str], None]) -> dict[str, Any]:
        return batch_part(n, say, "none-done")

    runs: list[tuple[str, Callable[[int, Callable[[str], None]], dict[str, Any]], int]] = []
    if "batch" in parts:
        runs.append(("batch", batch_part, args.workflows))
        if args.none_done:
            runs.append(("batch-none-done", none_done, args.workflows))
    if "interrupt" in parts:
        runs.append(("interrupt", interrupt_part, args.interrupt_workflows))
    if "s3" in parts:
        runs.append(("s3", s3_part, args.s3_workflows))
    for part, run, size in runs:
        started = time.perf_counter()
        results[part] = run(size, say)
        results[part]["part_s"] = round(time.perf_counter() - started, 1)
        say(f"  ({part}: {results[part]['part_s']:.0f} s in all)")
        say("")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'scale.txt'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=200_000, help="of the batch part")
    parser.add_argument("--interrupt-workflows", type=int, default=50_000)
    parser.add_argument("--s3-workflows", type=int, default=20_000)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated")
    parser.add_argument("--none-done", action="store_true", help="the batch with no step done too")
    parser.add_argument("--batch-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="all-done", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_child:
        print(json.dumps(asyncio.run(batch_child(args.batch_child, args.workload))))
    else:
        main(args)
