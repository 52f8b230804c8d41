"""The dependency list says what is needed: the core without the web stack, the study and serve
extras with it, the test extra with everything a test imports; and a missing stack is one line."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from factpatch.cli import main
from factpatch.core.extras import EXTRAS, WEB_STACK, require

PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def names(requirements: list[str]) -> set[str]:
    """Distribution names, normalised, without versions."""
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def module_of(distribution: str) -> str:
    return distribution.replace("-", "_")


def test_core_dependencies_hold_no_web_stack_and_no_test_only_package():
    core = names(PROJECT["dependencies"])
    assert not core & {"fastapi", "uvicorn", "jinja2", "python-multipart", "starlette", "scikit-learn"}


def test_extras_match_the_modules_the_code_checks_for():
    extras = PROJECT["optional-dependencies"]
    for extra, modules in EXTRAS.items():
        assert {module_of(d) for d in names(extras[extra])} == set(modules), extra
    assert names(extras["study"]) == names(extras["serve"])
    assert sorted(extras["study"]) == sorted(extras["serve"])  # same versions too


def test_the_test_extra_runs_every_test():
    extras = PROJECT["optional-dependencies"]
    test = names(extras["test"])
    assert names(extras["study"]) <= test  # the study's tests import fastapi, the browser test uvicorn
    assert {"scikit-learn", "pytest", "httpx", "playwright"} <= test
    for study_req in extras["study"]:
        assert study_req in extras["test"]  # the same lower bounds


def test_scikit_learn_is_used_only_by_tests():
    src = Path(__file__).parent.parent / "src"
    users = [p for p in src.rglob("*.py") if re.search(r"^\s*(import|from) sklearn", p.read_text(), re.MULTILINE)]
    assert users == []


SAMPLE = Path(__file__).parent / "study" / "data" / "sample.jsonl"


def test_serve_without_the_web_stack_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    assert main(["study", "create", "--db", str(tmp_path / "s.db"), "--from-jsonl", str(SAMPLE), "--raters", "1"]) == 0
    capsys.readouterr()
    for module in ("fastapi", "uvicorn"):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    code = main(["study", "serve", "--db", str(tmp_path / "s.db"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "pip install 'factpatch[study]'" in err and "fastapi, uvicorn" in err


def test_create_and_analyze_need_no_web_stack(tmp_path, monkeypatch, capsys):
    for module in WEB_STACK:
        monkeypatch.setitem(sys.modules, module, None)
    assert main(["study", "create", "--db", str(tmp_path / "s.db"), "--from-jsonl", str(SAMPLE), "--raters", "1"]) == 0
    assert main(["study", "analyze", "--db", str(tmp_path / "s.db"), "--out", str(tmp_path / "o")]) == 2
    assert "no answers yet" in capsys.readouterr().err  # got as far as reading the answers


def test_require_names_what_is_missing(monkeypatch):
    require("study", "x")  # installed here: nothing to say
    monkeypatch.setitem(sys.modules, "python_multipart", None)
    with pytest.raises(Exception, match=r"x needs python_multipart, not installed here: pip install 'factpatch\[serve\]'"):
        require("serve", "x")
