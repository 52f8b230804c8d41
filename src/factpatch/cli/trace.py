"""`factpatch trace`: causal tracing of one prompt, or the average over a dataset of known facts."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from . import add_common, add_ray_options, ray_settings


def register(commands) -> None:
    trace = commands.add_parser(
        "trace",
        help="causal tracing: where does the model store a fact? (one prompt, or averaged over a dataset)",
        description="Corrupt the subject's input embeddings with Gaussian noise (noise × σ, σ the std of the "
        "model's token embeddings), restore one state at a time, and record P(target). One prompt writes "
        "DIR/trace.json, trace.png and trace.svg; --dataset traces the facts the model knows, appends them to "
        "DIR/results.jsonl (a killed run resumes), and writes DIR/summary.json and average.png|svg.",
    )
    add_common(trace)
    source = trace.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help='the prompt, containing the subject: "Lionel Messi plays the sport of"')
    source.add_argument("--dataset", type=Path, metavar="FILE", help="known facts (known_1000.json layout)")
    trace.add_argument("--subject", help="the subject, as it appears in the prompt (with --prompt)")
    trace.add_argument("--target", help="the object to trace (default: the model's own top next token)")
    trace.add_argument("--kinds", default="hidden,mlp,attn",
                       help="states to restore, comma-separated: hidden, mlp, attn (default all three)")
    trace.add_argument("--samples", type=int, default=10, help="noise samples per prompt (default 10)")
    trace.add_argument("--noise", type=float, default=3.0, help="noise scale ν/σ (default 3)")
    trace.add_argument("--window", type=int, default=10, help="layers restored together for mlp and attn (default 10)")
    trace.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    trace.add_argument("--dtype", default="float32", metavar="{float32,bfloat16}",
                       help="precision of the passes: float32 (exact, default) or bfloat16 (about 2x faster "
                            "on CPUs with bf16 units; probabilities move by a few hundredths)")
    trace.add_argument("--sever", action="append", default=[], choices=["mlp", "attn"],
                       help="also restore hidden states with the later MLP (attention) outputs at that token frozen "
                       "at their corrupted values (repeatable)")
    trace.add_argument("--n", type=int, default=None, help="with --dataset: trace at most the first N known facts")
    trace.add_argument("--corpus", type=Path, default=None,
                       help="text for σ (plain text or JSONL; default: text sampled from the model, cached)")
    trace.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    add_ray_options(trace)
    trace.set_defaults(func=run_trace)


def _check_out_dir(path: Path) -> bool:
    """Make sure `path` is a writable directory; True if it was created here."""
    from ..core.errors import FactpatchError

    if path.exists() and not path.is_dir():
        raise FactpatchError(f"cannot write to {path}: it is a file, not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".factpatch-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise FactpatchError(f"cannot write to {path}: {exc.strerror or exc}") from exc
    return created


def run_trace(args) -> int:
    from ..core.errors import FactpatchError
    from ..tracing.dataset import load_facts
    from ..tracing.engine import check_fact
    from ..tracing.settings import NoiseSettings, TraceSettings

    # Everything that can be checked without the model is checked before anything is written,
    # by the settings classes themselves (samples, noise, window, kinds, sever).
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    settings = TraceSettings(
        kinds, args.window, tuple(args.sever),
        # over a dataset only the last subject token's severed trace is averaged (the paper's Fig 3)
        sever_tokens="last subject" if args.dataset is not None else "all",
        noise=NoiseSettings(args.noise, args.samples, args.seed), dtype=args.dtype,
    )
    if args.corpus is not None and not args.corpus.is_file():
        raise FactpatchError(f"corpus file not found: {args.corpus}")
    if args.dataset is not None:
        if args.subject or args.target:
            raise FactpatchError("--subject and --target go with --prompt; a dataset names its own")
        if args.n is not None and args.n < 1:
            raise FactpatchError(f"--n must be at least 1, got {args.n}")
        load_facts(args.dataset)
    else:
        if args.subject is None:
            raise FactpatchError("--subject is required with --prompt")
        check_fact(args.prompt, args.subject, args.target)
        if args.n is not None:
            raise FactpatchError("--n goes with --dataset")
        if args.ray is not None:
            raise FactpatchError("--ray goes with --dataset: one prompt is traced here")
    args.cluster = ray_settings(args)
    created = _check_out_dir(args.out)
    try:
        if args.dataset is not None:
            return _run_dataset(args, settings)
        return _run_prompt(args, settings)
    except BaseException:
        if created and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()
        raise


def _load(args):
    from . import load_lm
    from ..tracing.settings import embedding_std

    lm = load_lm(args)
    sigma = embedding_std(lm, corpus=args.corpus, cache_dir=args.cache_dir, progress=not args.quiet)
    return lm, sigma


def _run_prompt(args, settings) -> int:
    from ..tracing.prompt import save_trace, trace_prompt

    lm, sigma = _load(args)
    began = time.perf_counter()
    result = trace_prompt(lm, args.prompt, args.subject, args.target, settings, sigma, args.cache_dir,
                          progress=not args.quiet)
    seconds = time.perf_counter() - began
    files = save_trace(result, args.out)
    noise = settings.noise
    print(
        f"{lm.name}: {result.prompt!r} -> {result.target!r}: P clean {result.p_clean:.4g}, "
        f"corrupted {result.p_corrupted:.4g} (noise {noise.scale:g}σ, σ = {sigma:.4g}, {noise.samples} samples), "
        f"traced in {seconds:.1f} s" + (f" in {settings.dtype} (approximate: float32 is exact)" if settings.dtype != "float32" else "")
    )
    if not result.target_is_top:
        print(f"warning: the model does not predict {result.target_token!r} first here")
    start, end = result.subject_range
    for name, grid in result.scores.items():
        cells = [(i, l) for i, row in enumerate(grid) if row is not None for l in range(len(row))]
        token, layer = max(cells, key=lambda t: grid[t[0]][t[1]])
        star = "*" if start <= token < end else ""
        print(f"  {name:<18} peak P {grid[token][layer]:.4g} at token {token} {result.tokens[token]!r}{star}, layer {layer}")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _run_dataset(args, settings) -> int:
    from ..core.runstore import refuse_if_being_written
    from ..tracing.dataset import trace_dataset

    refuse_if_being_written(args.out)  # before the model and σ: a run still going is told now
    lm, sigma = _load(args)
    began = time.perf_counter()
    if args.cluster is not None:
        from ..evaluation.distributed import trace_dataset_ray

        run = trace_dataset_ray(lm, args.model, args.dataset, args.out, settings, args.cluster, args.n, sigma,
                                args.cache_dir, progress=not args.quiet).run
    else:
        run = trace_dataset(lm, args.dataset, args.out, settings, args.n, sigma, args.cache_dir, progress=not args.quiet)
    seconds = time.perf_counter() - began
    summary = run.summary
    print(
        f"{lm.name} knows {run.known} of {run.checked} facts in {args.dataset.name}; "
        f"{run.traced} traced ({run.new} new, {seconds:.0f} s)"
        + (f" in {settings.dtype} (approximate: float32 is exact)" if settings.dtype != "float32" else "")
    )
    if run.traced:
        print(
            f"  average P clean {summary['p_clean']:.4g}, corrupted {summary['p_corrupted']:.4g}, "
            f"total effect {summary['total_effect']:.4g}"
        )
        for peak in summary["peaks"].values():
            print(f"  {peak['trace']:<6} at the {peak['group']:<18} peaks at layer {peak['layer']:>2}: "
                  f"P {peak['p']:.4g}, indirect effect {peak['ie']:.4g}")
        if "choice" in summary:
            print(f"  suggested edit layer {summary['choice']['edit_layer']}"
                  + (f", attention layer {summary['choice']['attn_layer']}" if "attn_layer" in summary["choice"] else ""))
    print("wrote " + ", ".join(str(f) for f in run.files))
    return 0
