"""The options several commands share, and the types that check their values.

Every command takes ``--log-format json`` (:func:`log_format_option`); those
that run flows take ``--otel`` (:func:`otel_option`). Both only record the
choice while the command line is parsed (:mod:`asteps.cli._setup` acts on it
when the command starts), so a command needs nothing but the decorator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from .._claims import DEFAULT_LEASE, MIN_LEASE
from .._shards import MAX_SHARDS, Shard, parse_shard
from ._setup import choices


class FiniteFloat(click.FloatRange):
    """A float option in a range, never NaN or infinity: ``nan`` compares false
    with every bound, so click's own ``FloatRange`` lets it through. Every float
    option of the CLI uses this type."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):  # before the range, which NaN would pass
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class ShardType(click.ParamType[Shard]):
    """``K/N``: shard K (0-based) of N, as :func:`asteps._shards.parse_shard` reads it."""

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Shard):
            return value
        try:
            return parse_shard(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def shard_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--shard K/N``: only the ids of shard K of N (rerun, swf submit)."""
    return click.option(
        "--shard",
        type=ShardType(),
        default=None,
        metavar="K/N",
        help="Only the ids in shard K of N, K counted from 0 (0/4 to 3/4): an id's shard is "
        "a stable hash of it, so N runs with K = 0 to N-1 (e.g. $JOB_COMPLETION_INDEX, "
        f"$AWS_BATCH_JOB_ARRAY_INDEX) cover each id once. N is at most {MAX_SHARDS:,}.",
    )(fn)


def store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        "store_url",
        default=None,
        metavar="URL",
        help="s3://bucket?endpoint_url=..., file:path or memory:// "
        "(default: $ASTEPS_STORE, else file:.asteps).",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(fn)


def pattern_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--reason", default=None, help="Reason recorded for --force/--skip.")(fn)
    fn = click.option(
        "--skip", "skip", multiple=True, metavar="PATTERN", help="Skip steps (repeatable)."
    )(fn)
    fn = click.option(
        "--force", "force", multiple=True, metavar="PATTERN", help="Force steps (repeatable)."
    )(fn)
    return fn


def flow_version_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--flow-version",
        default=None,
        metavar="TEXT",
        help="The version written in every marker; steps with rerun_on_new_version "
        "run again where a marker says another one.",
    )(fn)


def param_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--param", "params", multiple=True, metavar="KEY=VALUE", help="Flow parameter."
    )(fn)


MAX_LEASE = 86400.0
"""The longest lease the CLI takes (a day): a claim whose holder died blocks
its step for a lease."""


def exclusive_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--exclusive`` and ``--lease SECONDS``, for the runners a command builds."""
    fn = click.option(
        "--lease",
        default=DEFAULT_LEASE,
        show_default=True,
        type=FiniteFloat(min=MIN_LEASE, max=MAX_LEASE),
        help="Seconds a claim on an exclusive step holds, renewed every third of it; "
        "a claim whose holder died is taken over after it (also for the steps the "
        "flow itself makes exclusive).",
    )(fn)
    return click.option(
        "--exclusive",
        is_flag=True,
        help="Claim every step in the store before running it, so that no other "
        "runner (another rerun, a worker, a service) runs it at the same time.",
    )(fn)


def log_format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-format text|json``: the command's logs on stderr, for people or pipelines."""
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        expose_value=False,
        is_eager=True,  # before the other options, whose errors are then logged alike
        callback=_choose_log_format,
        help="Logs on stderr: human text, or one JSON object per line.",
    )(fn)


def otel_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--otel``: send traces and metrics over OTLP/HTTP while the command runs."""
    return click.option(
        "--otel",
        is_flag=True,
        expose_value=False,
        callback=_choose_otel,
        help="Send traces and metrics over OTLP/HTTP, configured by the OTEL_* "
        "environment variables (service name: asteps unless OTEL_SERVICE_NAME). "
        "Needs asteps[otel].",
    )(fn)


def _choose_log_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    choices(ctx).log_format = "json" if value == "json" else "text"
    return value


def _choose_otel(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    choices(ctx).otel = value
    return value
