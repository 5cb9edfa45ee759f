"""The public namespace: everything from `asteps`, AWS parts loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import asteps


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
