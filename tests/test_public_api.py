"""The public namespace: everything from `asteps`, AWS parts loaded on first use."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import asteps
import asteps.errors


def test_every_public_name_is_importable_from_asteps() -> None:
    for name in asteps.__all__:
        assert getattr(asteps, name) is not None, name


def test_importing_asteps_does_not_import_aioboto3() -> None:
    code = "import sys, asteps; print('aioboto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        asteps.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_the_cli_imports_only_public_modules_of_the_other_subpackages() -> None:
    """``asteps.cli`` is built on what ``asteps.swf``, ``asteps.stores`` and
    ``asteps.testing`` publish, as any program would be (issue 23)."""
    private = []
    for path in sorted((Path(asteps.__file__).parent / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ["asteps", "cli"][: 2 - node.level + 1] if node.level else []
                modules = [".".join([*base, node.module or ""]).strip(".")]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                top, _, rest = module.removeprefix("asteps.").partition(".")
                if module.startswith("asteps.") and top in SUBPACKAGES and "._" in f".{rest}":
                    private.append(f"{path.name}: {module}")
    assert private == []


SUBPACKAGES = {"swf", "stores", "testing"}


def test_every_exception_of_asteps_errors_is_exported() -> None:
    """The guides name ``ClaimLost``, ``ClaimsNotSupported`` and
    ``MarkersNotReadable`` as what a step gives: like every other error, each
    is importable from ``asteps`` (or, for SWF's own, ``asteps.swf``)."""
    import asteps.swf

    exceptions = {
        name
        for name, value in vars(asteps.errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == "asteps.errors"
    }
    exported = set(asteps.__all__) | set(asteps.swf.__all__)
    assert sorted(exceptions - exported) == []
    for name in exceptions & set(asteps.__all__):
        assert getattr(asteps, name) is getattr(asteps.errors, name)


def test_every_exported_name_is_in_the_api_reference() -> None:
    """docs/api.md documents each name of ``asteps.__all__``: by its own entry
    (``::: asteps.X``), its subpackage's (``::: asteps.swf.X``,
    ``::: asteps.stores.s3.S3Store``), or for errors the module's."""
    entries = re.findall(r"^::: (\S+)$", API_MD.read_text(), re.MULTILINE)
    documented = {entry.rpartition(".")[2] for entry in entries}
    if "asteps.errors" in entries:
        documented |= {n for n in asteps.__all__ if getattr(asteps.errors, n, None) is not None}
    assert sorted(set(asteps.__all__) - documented) == []


def test_every_name_in_the_api_reference_exists() -> None:
    for entry in re.findall(r"^::: (\S+)$", API_MD.read_text(), re.MULTILINE):
        module, _, name = entry.rpartition(".")
        if module == "asteps" or module.startswith("asteps."):
            assert hasattr(importlib.import_module(module), name), entry
        else:
            importlib.import_module(entry)


API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_the_literal_types_in_public_signatures_are_importable_from_asteps() -> None:
    """A user who annotates with them need not import from a private module."""
    import typing

    from asteps import EventBus, OnMissingResult, Overflow, Status, StepOptions, StepOutcome

    assert typing.get_type_hints(StepOutcome)["status"] == Status
    assert typing.get_type_hints(StepOptions)["on_missing_result"] == OnMissingResult
    assert typing.get_type_hints(EventBus.__init__)["overflow"] == Overflow


def test_the_types_of_a_batchs_ids_are_importable_from_asteps() -> None:
    """``BatchRun.run`` and ``asteps.swf.submit`` take an ``IdReader`` (a file
    or a pipe) and ids that may be ``BadId``: a user who annotates code that
    builds or passes them need not import from a private module."""
    import typing

    import asteps._ids
    import asteps.swf
    from asteps import BadId, BatchRun, IdReader

    assert (IdReader, BadId) == (asteps._ids.IdReader, asteps._ids.BadId)
    for function in (BatchRun.run, asteps.swf.submit):
        shown = str(typing.get_type_hints(function)["ids"])
        assert "asteps._ids.IdReader" in shown, function
        assert "asteps._ids.BadId" in shown, function


def test_what_an_id_readers_stop_returns_is_importable_from_asteps() -> None:
    """``IdReader.stop()`` gives the ids read and not taken, and where reading
    stopped: a ``mypy --strict`` user who keeps it annotates it with a type
    importable from ``asteps``, documented beside ``IdReader``."""
    import typing

    from asteps import IdReader, IdsLeft

    assert typing.get_type_hints(IdReader.stop)["return"] is IdsLeft
    assert IdsLeft.__module__.startswith("asteps")
    assert "IdsLeft" in asteps.__all__
    assert "::: asteps.IdsLeft" in API_MD.read_text()


def test_the_public_classes_return_no_private_type() -> None:
    """Each public method of a class exported from ``asteps`` returns a type
    that is exported too, or none of asteps' own."""
    import inspect
    import typing

    public = {id(getattr(asteps, name)) for name in asteps.__all__ if name not in asteps._LAZY}
    private = []
    for name in sorted(set(asteps.__all__) - asteps._LAZY.keys()):
        value = getattr(asteps, name)
        if not inspect.isclass(value) or not value.__module__.startswith("asteps"):
            continue
        for method_name, method in vars(value).items():
            if method_name.startswith("_") or not callable(method):
                continue
            try:
                returned = typing.get_type_hints(method).get("return")
            except NameError:  # a name only under TYPE_CHECKING
                continue
            for kind in _types_in(returned):
                if (
                    inspect.isclass(kind)
                    and kind.__module__.startswith("asteps")
                    and id(kind) not in public
                ):
                    private.append(f"{name}.{method_name} -> {kind.__qualname__}")
    assert private == []


def _types_in(hint: object) -> list[object]:
    """``hint`` and every type it is made of (``X | None``, ``list[X]``)."""
    import typing

    return [hint, *(kind for arg in typing.get_args(hint) for kind in _types_in(arg))]
