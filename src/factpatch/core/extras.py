"""Optional parts of the install (pyproject's extras) and the one-line error when one is missing.

The core (locate, edit, evaluate, and a study's `create` and `analyze`) needs no web stack; the
study's web server (`factpatch study serve`) and the model server (`factpatch serve`) need
FastAPI, uvicorn, Jinja2 and python-multipart, installed with `pip install 'factpatch[study]'`
(or `[serve]`, the same list). A command that needs an extra calls `require` first, so a missing
package is one `error: ...` line naming the install command, not an ImportError traceback.
"""

from __future__ import annotations

import importlib

from .errors import FactpatchError

WEB_STACK = ("fastapi", "uvicorn", "jinja2", "python_multipart")  # import names; pyproject lists the distributions

# extra -> the modules it provides (tests/test_extras.py keeps this in step with pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "study": WEB_STACK,
    "serve": WEB_STACK,
    "ray": ("ray",),  # eval/trace --ray (evaluation.distributed)
}


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    missing = []
    for name in EXTRAS[extra]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require(extra: str, purpose: str) -> None:
    """Raise a one-line FactpatchError if any module of `extra` is missing: `purpose` says what needs it."""
    missing = missing_modules(extra)
    if missing:
        raise FactpatchError(
            f"{purpose} needs {', '.join(missing)}, not installed here: pip install 'factpatch[{extra}]'"
        )
