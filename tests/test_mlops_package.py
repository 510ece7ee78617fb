"""The mlops package's lazy exports: every listed name resolves to the object its module defines."""

from __future__ import annotations

import importlib

import pytest

import tinyml_lab.mlops as mlops


@pytest.mark.parametrize("name", sorted(mlops._EXPORTS))
def test_every_export_resolves_to_its_module(name):
    module = importlib.import_module(f"tinyml_lab.mlops.{mlops._EXPORTS[name]}")
    assert getattr(mlops, name) is getattr(module, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_tool'"):
        mlops.not_a_tool  # noqa: B018
