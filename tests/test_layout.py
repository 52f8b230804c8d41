"""The layout rules the code keeps (issue 13), checked on the source text: tests use public names
and read nothing outside the repository; settings classes follow one naming scheme; algorithms
reach a model's modules only through the adapter table and core/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "factpatch"
TESTS = sorted(p for p in (ROOT / "tests").rglob("*.py") if p.name != "test_layout.py")
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from factpatch... import name` in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("factpatch")
            for alias in node.names]


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_tests_import_only_public_names(path):
    private = [f"{module}.{name}" for module, name in _imported_names(path) if name.startswith("_")]
    assert not private, f"{path.name} imports private names: {private}"
    attributes = re.findall(r"\bfactpatch(?:\.\w+)*\._[a-z]\w*", path.read_text())
    assert not attributes, f"{path.name} reaches private names: {attributes}"


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_tests_read_no_data_from_outside_the_repository(path):
    text = path.read_text()
    for outside in ("/work/", "../shared", '"shared"', "parents[1].parent", "parents[2]"):
        assert outside not in text, f"{path.name} points outside the repository: {outside}"


def _dataclasses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            and any("dataclass" in ast.unparse(d) for d in node.decorator_list)]


def test_settings_classes_follow_one_naming_scheme():
    """A method's hyper-parameters: <Method>Params; the settings of a run or a computation:
    <What>Settings; a description of an input: <What>Spec. No *Config, *HyperParams, *Options."""
    names = {name: path.relative_to(PACKAGE) for path in SOURCES for name in _dataclasses(path)}
    assert "ROMEParams" in names and "TraceSettings" in names  # the scan sees the package
    off = {name: str(where) for name, where in names.items()
           if re.search(r"(Config|HyperParams|HParams|Hparams|Options|Opts)$", name)}
    assert not off, f"settings classes outside the naming scheme: {off}"


@pytest.mark.parametrize("package", ["tracing", "editing", "evaluation"])
def test_algorithms_reach_modules_only_through_the_adapter(package):
    """Sub-modules are found by the adapter's names (core.models) and run through core/, never
    by name from an algorithm; key/value caches are built and read in core/ only."""
    for path in sorted((PACKAGE / package).rglob("*.py")):
        text = path.read_text()
        for leak in ("get_submodule", "DynamicCache", "hasattr(lm.model", "hasattr(model"):
            assert leak not in text, f"{path.relative_to(PACKAGE)} uses {leak}"
