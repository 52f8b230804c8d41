"""`factpatch models` and `factpatch stats`."""

from __future__ import annotations

import json

from . import add_common, add_corpus_options


def register(commands) -> None:
    models = commands.add_parser("models", help="list the embedded models: installed, cached, layers, edit layer")
    models.add_argument("--json", action="store_true", help="print JSON")
    add_common(models, model=False)
    models.set_defaults(func=run_models)

    stats = commands.add_parser(
        "stats", help="compute (or show cached) key statistics C = E[k kᵀ] at the edit layer",
        description="Second moment of the inputs of the edit layer's MLP output projection, over text sampled "
        "from the model itself (default) or --corpus PATH (plain text or JSONL). Cached on disk.",
    )
    add_common(stats)
    stats.add_argument("--layer", type=int, default=None, help="layer (default: the model's edit layer)")
    add_corpus_options(stats, "--tokens")
    stats.add_argument("--seed", type=int, default=0, help="seed of the self-sampled corpus")
    stats.set_defaults(func=run_stats)


def run_models(args) -> int:
    from ..core.models import describe_models
    from ..editing.registry import default_layers

    rows = describe_models(args.cache_dir)
    for row in rows:  # MEMIT and AlphaEdit share each model's range
        layers = default_layers(row["name"], "memit")
        row["batch_layers"] = list(layers) if layers else None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<14} {'installed':<9} {'cached':<6} {'layers':>6} {'edit layer':>10} {'attn layer':>10} "
          f"{'batch layers':>12}  description")
    for row in rows:
        batch = f"{row['batch_layers'][0]}-{row['batch_layers'][-1]}" if row["batch_layers"] else "?"
        print(
            f"{row['name']:<14} {'yes' if row['installed'] else 'no':<9} {'yes' if row['cached'] else 'no':<6} "
            f"{row['layers'] or '?':>6} {row['edit_layer']:>10} {row['attn_layer']:>10} {batch:>12}  {row['description']}"
        )
        print(f"{'':<14} layers chosen by {row['edit_layer_source']}")
        print(f"{'':<14} batch layers (MEMIT, AlphaEdit): the five consecutive layers with the largest summed "
              "MLP indirect effect in the same trace")
        if not row["installed"]:
            print(f"{'':<14} install: {row['install']}")
    return 0


def run_stats(args) -> int:
    from . import corpus_spec, load_lm
    from ..editing.registry import edit_layer
    from ..editing.stats import key_second_moment

    corpus = corpus_spec(args, args.seed)
    lm = load_lm(args)
    layer = lm.check_layer(args.layer if args.layer is not None else edit_layer(lm))
    C = key_second_moment(lm, layer, corpus, args.cache_dir, not args.quiet)
    eigenvalues = __import__("torch").linalg.eigvalsh(C.double())
    print(
        f"{lm.name} layer {layer}: C is {tuple(C.shape)}, trace {float(C.trace()):.4g}, "
        f"condition number {float(eigenvalues[-1] / eigenvalues[0].clamp_min(1e-30)):.3g}"
    )
    return 0
