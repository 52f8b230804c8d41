"""`factpatch` command line: a thin layer over the Python API (one module per command group)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..core.errors import FactpatchError


def add_common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    """Options every model-using command shares."""
    from ..core.models import DEFAULT_MODEL

    if model:
        parser.add_argument(
            "--model", default=DEFAULT_MODEL,
            help=f"embedded model name (smollm2-135m, gemma3-270m) or a local Hugging Face model directory "
            f"(default {DEFAULT_MODEL})",
        )
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache for converted weights and statistics (default $FACTPATCH_CACHE or ~/.cache/factpatch)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from . import edit, evaluate, models, patches, trace

    parser = argparse.ArgumentParser(
        prog="factpatch",
        description="Locate and edit factual associations in language models (ROME), with exact, revertible patches.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    models.register(commands)
    edit.register(commands)
    patches.register(commands)
    for optional in (trace, evaluate):
        optional.register(commands)
    # Always registered: they need only the core to parse; `serve` and `study serve` check for the
    # web stack (the `serve` and `study` extras) themselves and name the install command if it is missing.
    from . import serve
    from ..study.cli import add_study_parser

    serve.register(commands)
    add_study_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "quiet", False) and args.verbose == 0:
        # factpatch's own notes (converting a model, computing statistics) tell a user why they wait
        logging.getLogger("factpatch").setLevel(logging.INFO)
    if args.verbose < 2:
        # transformers' own progress bars and notices are noise around factpatch's output
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return int(args.func(args) or 0)
    except FactpatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
