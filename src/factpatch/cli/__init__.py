"""`factpatch` command line: a thin layer over the Python API (one module per command group)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from .. import __version__
from ..core.errors import FactpatchError


def add_preset(parser: argparse.ArgumentParser) -> None:
    """--preset NAME (editing.registry.PRESETS; checked and applied once the command runs, so the
    parser needs no heavy import)."""
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="named settings under --set (several joined by commas): fast = a bfloat16 δ "
                        "optimisation for ROME, MEMIT and AlphaEdit, and v_lr 2.0 on SmolLM2; sequential = MEMIT "
                        "holds the earlier edits of a stack at their keys read now (replay_edits, replay_scale 0). "
                        "Not the paper's settings; the resolved settings are recorded")


def add_common(parser: argparse.ArgumentParser, model: bool = True) -> None:
    """Options every model-using command shares."""
    from ..core.models import DEFAULT_MODEL

    if model:
        parser.add_argument(
            "--model", default=DEFAULT_MODEL,
            help=f"embedded model name (smollm2-135m, gemma3-270m) or a local Hugging Face model directory "
            f"(default {DEFAULT_MODEL})",
        )
        parser.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N|mps",
                            help="where the model runs (default cpu, where every recorded number was made)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache for converted weights and statistics (default $FACTPATCH_CACHE or ~/.cache/factpatch)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def load_lm(args, model: str | None = None):
    """The model a command works on: --model (or `model`) from --cache-dir onto --device."""
    from ..core.models import load_model

    return load_model(model if model is not None else args.model, args.cache_dir, getattr(args, "device", None))


def add_corpus_options(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """--corpus and --corpus-tokens (and `aliases` of it: `stats` keeps its older --tokens): the
    text the key statistics C are estimated from."""
    parser.add_argument("--corpus", type=Path, default=None, metavar="FILE",
                        help="key-statistics corpus, plain text or JSONL (default: text the model samples itself)")
    parser.add_argument("--corpus-tokens", *aliases, dest="corpus_tokens", type=int, default=None, metavar="N",
                        help="tokens of it C is estimated from (default 20,480)")


def corpus_spec(args, seed: int = 0):
    """The CorpusSpec of --corpus/--corpus-tokens, checked before any model is loaded."""
    from ..editing.stats import CorpusSpec

    if args.corpus is not None and not args.corpus.is_file():
        raise FactpatchError(f"corpus file not found: {args.corpus}")
    if args.corpus_tokens is None:
        return CorpusSpec(args.corpus, seed=seed)
    if args.corpus_tokens < 1:
        raise FactpatchError("--corpus-tokens must be at least 1")
    return CorpusSpec(args.corpus, args.corpus_tokens, seed)


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """--ray, --workers, --threads-per-worker (evaluation.distributed)."""
    group = parser.add_argument_group("Ray cluster (pip install 'factpatch[ray]'; see docs/distributed.md)")
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="auto|ADDRESS",
                       help="run on Ray workers: no value starts a local instance (or joins $RAY_ADDRESS), "
                       "auto joins the cluster `ray start` runs on this machine, HOST:PORT or ray://HOST:PORT another")
    group.add_argument("--workers", type=int, default=None,
                       help="Ray workers, each loading the model once (default: the cluster's CPUs / threads)")
    group.add_argument("--threads-per-worker", type=int, default=None, help="torch threads per Ray worker (default 1)")


def ray_settings(args):
    """The RaySettings of --ray (None without it), checked before any model is loaded: Ray
    installed, the numbers sane, the address reachable."""
    if args.ray is None:
        if args.workers is not None or args.threads_per_worker is not None:
            raise FactpatchError("--workers and --threads-per-worker go with --ray")
        return None
    if getattr(args, "device", "cpu") != "cpu":
        raise FactpatchError("--device goes without --ray: Ray workers load the model on their own CPUs")
    from ..evaluation.ray_pool import RaySettings, check_reachable, require_ray

    threads = 1 if args.threads_per_worker is None else args.threads_per_worker
    settings = RaySettings(args.ray, args.workers, threads)
    require_ray()
    check_reachable(settings.address)
    return settings


def build_parser() -> argparse.ArgumentParser:
    from . import edit, evaluate, models, patches, trace

    parser = argparse.ArgumentParser(
        prog="factpatch",
        description="Locate and edit factual associations in language models (ROME, MEMIT, AlphaEdit), with exact, revertible patches.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"factpatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    models.register(commands)
    edit.register(commands)
    patches.register(commands)
    for optional in (trace, evaluate):
        optional.register(commands)
    # Always registered: they need only the core to parse; `serve` and `study serve` check for the
    # web stack (the `serve` and `study` extras) themselves and name the install command if it is missing.
    from ..study.cli import add_study_parser
    from . import serve

    serve.register(commands)
    add_study_parser(commands)
    return parser


class Terminated(BaseException):
    """SIGTERM (`kill`, `timeout`, a scheduler stopping the job) raised where the command is.

    By default SIGTERM ends the process on the spot, so a run killed while writing leaves its
    temporary file beside the result and a study transaction open. Raised instead, it unwinds like
    Ctrl-C: every `finally` and cleanup runs (temporary files removed, transactions rolled back,
    patches reverted), and what a run had committed is what a resume finds. A BaseException, so no
    `except Exception` on the way swallows it."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises `Terminated` while the block runs, where it would have killed the process;
    a handler someone else installed, or a call off the main thread (where Python cannot set
    handlers), is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
        if getattr(args, "device", None) is not None:
            from ..core.models import resolve_device

            resolve_device(args.device)  # a device this machine lacks fails here, before anything is read or written
        with sigterm_unwinds():
            return int(args.func(args) or 0)
    except FactpatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # whoever read the output stopped (`| head`): end quietly, with the shell's status for SIGPIPE,
        # and point stdout at /dev/null so the interpreter's last flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
