"""Flows: ``async def flow(runner, **params)``, and how the CLI finds them.

A flow is named ``package.module:function`` or ``path/to/file.py:function``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from ._names import shown
from .errors import FlowError, describe

Flow: TypeAlias = Callable[..., Awaitable[Any]]
"""``async def flow(runner: Runner, **params) -> Any``."""


def load_flow(spec: str) -> Flow:
    """Import the flow ``spec`` names and check its shape."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise FlowError(
            f"flow {spec!r} must be 'package.module:function' or 'path/to/file.py:function'"
        )
    module = _import(module_part, spec)
    try:
        flow = getattr(module, attr)
    except AttributeError:
        names = sorted(n for n, v in vars(module).items() if inspect.iscoroutinefunction(v))
        hint = f"; async functions there: {', '.join(names)}" if names else ""
        raise FlowError(f"{module_part!r} has no attribute {attr!r}{hint}") from None
    check_flow(flow, spec)
    return flow  # type: ignore[no-any-return]


def flow_names(spec: str, flow: Flow | None = None) -> frozenset[str]:
    """What the flow ``spec`` resolves to, found without importing anything, so
    that spellings of one flow compare equal (``flows.py:flow``,
    ``./flows.py:flow``, an absolute path, a symlink):
    ``file:<real path>:<attr>`` for a file, ``module:<name>:<attr>`` for a
    module. Given the ``flow`` loaded from a module spec, its file is added.

    Raises :class:`FlowError` for a spec that is not a flow spec.
    """
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise FlowError(
            f"flow {shown(spec)} must be 'package.module:function' or 'path/to/file.py:function'"
        )
    if not _is_file(module_part):
        names = {f"module:{module_part}:{attr}"}
        module = sys.modules.get(getattr(flow, "__module__", "")) if flow is not None else None
        where = getattr(module, "__file__", None)
        if isinstance(where, str):
            names.add(f"file:{os.path.realpath(where)}:{attr}")
        return frozenset(names)
    try:
        return frozenset({f"file:{os.path.realpath(module_part)}:{attr}"})
    except (ValueError, OSError) as exc:  # a NUL byte, a path too long
        raise FlowError(f"flow {shown(spec)} is not a file path: {describe(exc)}") from None


def _is_file(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part


def check_flow(flow: object, name: str = "flow") -> None:
    """A flow is an async function taking the runner first, then keyword params."""
    if not inspect.iscoroutinefunction(flow):
        raise FlowError(
            f"{name} must be an 'async def flow(runner, **params)' function, "
            f"got {type(flow).__name__}"
        )
    params = list(inspect.signature(flow).parameters.values())
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if not positional:
        raise FlowError(
            f"{name} must take the runner as its first argument: flow(runner, **params)"
        )


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` to a dict; a pair without ``=`` is refused."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise FlowError(f"--param {pair!r} must be key=value with a Python identifier as key")
        params[key] = value
    return params


def check_params(flow: Flow, params: Mapping[str, str]) -> None:
    """Refuse parameters the flow cannot take, before any workflow runs.

    A key naming the runner's argument, a key the flow has no parameter for
    (and no ``**params``), or a required keyword missing: each a
    :class:`FlowError` that names it.
    """
    signature = inspect.signature(flow)
    runner_arg = next(iter(signature.parameters))
    if runner_arg in params:
        raise FlowError(
            f"--param {runner_arg}=... collides with the flow's runner argument "
            f"{runner_arg!r}: choose another name"
        )
    try:
        signature.bind(None, **params)
    except TypeError as exc:
        accepted = [
            n
            for n, p in list(signature.parameters.items())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        takes = f"; it takes {', '.join(accepted)}" if accepted else "; it takes none"
        raise FlowError(f"the flow's parameters do not fit: {exc}{takes}") from None


def _import(module_part: str, spec: str) -> Any:
    if _is_file(module_part):
        path = Path(module_part)
        if not path.is_file():
            raise FlowError(f"flow file {str(path)!r} does not exist (from {spec!r})")
        name = f"_asteps_flow_{abs(hash(path.resolve()))}"
        loaded = sys.modules.get(name)
        if loaded is not None:
            return loaded
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise FlowError(f"cannot load {str(path)!r} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise FlowError(f"importing {str(path)!r} failed: {describe(exc)}") from exc
        return module
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        raise FlowError(
            f"cannot import {module_part!r} ({exc}); check the name, or give a file path "
            "like flows/export.py:flow"
        ) from None
