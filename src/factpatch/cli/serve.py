"""`factpatch serve`: the lab in a browser and the model over an OpenAI-compatible API, with hot patches."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from . import add_common

logger = logging.getLogger(__name__)


def register(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="the lab in a browser, and the (edited) model over an OpenAI-compatible API",
        description="Load one model and serve the lab page at / (trace, edit, compare, patches) and the "
        "OpenAI-compatible API at /v1 (models, completions, chat completions; patches, edits, traces, jobs). "
        "Patches apply and revert hot; with --state the applied stack survives a restart.",
    )
    add_common(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only; others need --token)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--token", default=os.environ.get("FACTPATCH_TOKEN") or None,
                       help="require this Bearer token on every API call and a sign-in for the page "
                       "(required with a --host other than loopback; default $FACTPATCH_TOKEN, which "
                       "keeps it out of the process list)")
    serve.add_argument("--state", type=Path, default=None, metavar="DIR",
                       help="keep the applied patch stack in DIR and apply it again on start")
    serve.add_argument("--max-upload-mb", type=float, default=64.0, help="largest patch upload (default 64 MB)")
    serve.set_defaults(func=run_serve)


def run_serve(args) -> int:
    from ..core.extras import require

    require("serve", "factpatch serve")
    import uvicorn

    from ..core.errors import FactpatchError
    from . import load_lm
    from ..core.web import bind, is_loopback, new_secret, token_hash
    from ..serve.app import create_app
    from ..serve.auth import Access
    from ..serve.context import Limits, ServeContext
    from ..serve.experiments import LabSettings
    from ..serve.host import ModelHost
    from ..serve.state import StateDir

    loopback = is_loopback(args.host)
    if not loopback and not args.token:
        raise FactpatchError(f"--host {args.host} is reachable from other machines: give a --token too")
    if args.token is not None and len(args.token) < 16:
        raise FactpatchError("--token must be at least 16 characters")
    if not 0 < args.max_upload_mb <= 4096:
        raise FactpatchError(f"--max-upload-mb must be between 0 and 4096, got {args.max_upload_mb:g}")
    state = StateDir(args.state) if args.state is not None else None
    sock = bind(args.host, args.port)  # before the model loads: a busy port fails at once
    lm = load_lm(args)
    host = ModelHost(lm, state)
    access = Access(new_secret(), token_hash(args.token) if args.token else None, loopback)
    ctx = ServeContext(host, access, LabSettings(cache_dir=args.cache_dir),
                       Limits(upload_bytes=int(args.max_upload_mb * (1 << 20))))
    app = create_app(ctx)
    if not loopback:
        logger.warning("serving on %s: the token travels in clear over plain HTTP; use a trusted network "
                       "or put the server behind HTTPS", args.host)
    address, port = sock.getsockname()[:2]
    print(f"serving {lm.name} on http://{address}:{port}/  (API: http://{address}:{port}/v1; "
          f"{len(host.view().patch_ids)} patches applied; Ctrl-C stops)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning" if args.quiet else "info", server_header=False)).run(
        sockets=[sock])
    return 0
