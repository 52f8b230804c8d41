"""`factpatch study create | serve | analyze`: argparse wiring for the human-evaluation study.

`add_study_parser(subparsers)` registers the `study` command on the top-level CLI's
subparsers; each sub-command's `func(args)` returns an exit code and raises FactpatchError
for bad input, which the top-level CLI prints as one line. This module imports nothing beyond
the core: `create` and `analyze` need no web stack, and `serve`, which does, checks for it
first and names the install command (`pip install 'factpatch[study]'`) when it is missing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from factpatch.core.errors import FactpatchError
from factpatch.core.extras import require
from factpatch.core.web import bind, is_loopback

logger = logging.getLogger(__name__)

DEFAULT_METHODS = "rome,ft+l,none"


def add_study_parser(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser(
        "study",
        help="human evaluation: raters rank edited-model texts for consistency and fluency",
        description="Run a blind human-evaluation study of edited-model texts (ROME paper, appendix J).",
    )
    commands = study.add_subparsers(dest="study_command", metavar="{create,serve,analyze}", required=True)

    create = commands.add_parser(
        "create",
        help="create a study database and print the invite links",
        description="Create a study database with one invite per rater, and print the invite paths and the admin "
        "token. The tokens are printed only here: the database keeps their hashes.",
    )
    create.add_argument("--db", type=Path, required=True, help="study database file to create")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-jsonl", type=Path, metavar="TEXTS",
                        help="texts to rank, one JSON object a line (what `factpatch compare` writes)")
    source.add_argument("--model", help="generate the texts with this model (needs `factpatch compare`)")
    create.add_argument("--dataset", help="with --model: cases to edit, as counterfact:PATH")
    create.add_argument("--n", type=int, default=50, help="with --model: number of cases (default 50)")
    create.add_argument("--methods", help=f"methods whose texts are ranked, comma-separated (with --model default "
                        f"{DEFAULT_METHODS}; with --from-jsonl default all in the file)")
    create.add_argument("--raters", type=int, required=True, help="number of raters (one invite each)")
    create.add_argument("--per-rater", type=int, metavar="K",
                        help="scenarios each rater ranks (default all; the paper: 10 of 50, 15 raters)")
    create.add_argument("--title", default=None, help="title raters see (must not name the methods)")
    create.add_argument("--seed", type=int, default=None,
                        help="seed for scenario and text orders (default random; stored in the database)")
    create.add_argument("--force", action="store_true", help="replace an existing database and its answers")
    create.set_defaults(func=run_create)

    serve = commands.add_parser(
        "serve", help="serve the study to raters", description="Serve the study's rater and admin pages."
    )
    serve.add_argument("--db", type=Path, required=True, help="study database")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for a network)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.set_defaults(func=run_serve)

    analyze = commands.add_parser(
        "analyze",
        help="charts, preference ratios and agreement from the answers",
        description="Analyse the answers: rank distributions per method (ranks.png), pairwise preferences with "
        "bootstrap intervals, inter-rater agreement (report.md, summary.json, pairwise.csv), all rankings "
        "(rankings.csv).",
    )
    analyze.add_argument("--db", type=Path, required=True, help="study database")
    analyze.add_argument("--out", type=Path, required=True, help="folder for the analysis files")
    analyze.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    analyze.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    analyze.set_defaults(func=run_analyze)


def parse_methods(text: str | None) -> list[str] | None:
    if text is None:
        return None
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if len(methods) != len(set(methods)):
        raise FactpatchError(f"--methods names a method twice: {text}")
    if len(methods) < 2:
        raise FactpatchError(f"--methods needs at least two methods to rank, got {text!r}")
    return methods


def run_create(args: argparse.Namespace) -> int:
    from factpatch.study.create import DEFAULT_TITLE, create_study
    from factpatch.study.scenarios import generate_scenarios, read_jsonl

    # Cheap checks first: a bad count should not wait for a model to load.
    if args.raters < 1:
        raise FactpatchError(f"--raters must be at least 1, got {args.raters}")
    if args.db.exists() and not args.force:
        raise FactpatchError(f"{args.db} exists already; pass --force to replace it (its answers are lost)")
    methods = parse_methods(args.methods)
    if args.from_jsonl is not None:
        scenarios = read_jsonl(args.from_jsonl, methods)
    else:
        if not args.dataset:
            raise FactpatchError("--model needs --dataset counterfact:PATH")
        if args.n < 1:
            raise FactpatchError(f"--n must be at least 1, got {args.n}")
        scenarios = generate_scenarios(
            args.model, args.dataset, args.n, methods or parse_methods(DEFAULT_METHODS), args.seed
        )
    invites = create_study(
        args.db, scenarios, raters=args.raters, per_rater=args.per_rater,
        title=args.title if args.title is not None else DEFAULT_TITLE, seed=args.seed, force=args.force,
    )
    n_texts = sorted({len(s.texts) for s in scenarios})
    print(
        f"created {invites.db_path}: {len(scenarios)} scenarios of {'/'.join(map(str, n_texts))} texts, "
        f"{len(invites.rater_tokens)} raters with {invites.per_rater} scenarios each, seed {invites.seed}"
    )
    print(f"admin token: {invites.admin_token}")
    print("invite paths (send each rater one; prefix the server's address, e.g. http://127.0.0.1:8000):")
    for number, path in enumerate(invites.paths, start=1):
        print(f"rater {number}: {path}")
    print("keep this output: the tokens are not stored and cannot be shown again")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    require("study", "factpatch study serve")
    import uvicorn

    from factpatch.study.app import create_app
    from factpatch.study.security import RedactInvites

    app = create_app(args.db)
    sock = bind(args.host, args.port)  # bind before uvicorn does, to fail with one clear line
    if not is_loopback(args.host):
        logger.warning(
            "serving on %s: anyone who can reach this address and has a link can open it; "
            "put it behind HTTPS for anything beyond a trusted network",
            args.host,
        )
    host, port = sock.getsockname()[:2]
    print(f"serving {args.db} on http://{host}:{port}/  (admin page: /admin; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level="info", server_header=False)  # sets up uvicorn's loggers
    logging.getLogger("uvicorn.access").addFilter(RedactInvites())
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from factpatch.study.analyze import (
        agreement_sentence,
        analyze_study,
        plural,
        preference_sentence,
    )

    analysis = analyze_study(args.db, args.out, n_boot=args.bootstrap, seed=args.seed)
    print(
        f"{plural(analysis.answers, 'answer')} from {analysis.raters_answering} of {analysis.raters_total} raters, "
        f"{analysis.scenarios_answered} of {analysis.scenarios_total} scenarios"
    )
    for c in analysis.criteria:
        print(f"{c.title}:")
        for p in c.preferences:
            print(f"  {preference_sentence(p, c.criterion)}")
        print(f"  {agreement_sentence(c)}")
    print(f"wrote ranks.png, report.md, summary.json, pairwise.csv, rankings.csv to {args.out}")
    return 0
