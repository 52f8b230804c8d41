"""`factpatch patch show | apply | revert | diff | norms | restrain`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import add_common


def register(commands) -> None:
    patch = commands.add_parser("patch", help="inspect, apply, revert and compare patch files")
    sub = patch.add_subparsers(dest="patch_command", metavar="{show,apply,revert,diff,norms,restrain}", required=True)

    show = sub.add_parser("show", help="print a patch file's metadata")
    show.add_argument("files", nargs="+", type=Path)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)

    apply = sub.add_parser(
        "apply", help="apply patches in order and write the edited model to a directory",
        description="Writes a Hugging Face model directory that remembers its patches (and the original bits "
        "of the weights they touch), so `factpatch patch revert` can undo them exactly. Use the directory as "
        "--model with any command.",
    )
    add_common(apply)
    apply.add_argument("files", nargs="+", type=Path, metavar="PATCH")
    apply.add_argument("--out", type=Path, required=True, help="output model directory")
    apply.add_argument("--force", action="store_true", help="apply patches made on another model; replace --out")
    apply.set_defaults(func=run_apply)

    revert = sub.add_parser("revert", help="revert one or all patches of a patched model directory")
    add_common(revert)
    which = revert.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="revert every patch (restores the original bits)")
    which.add_argument("--patch", action="append", metavar="ID", help="patch id (or prefix) to revert (repeatable)")
    revert.add_argument("--out", type=Path, required=True, help="output model directory")
    revert.add_argument("--force", action="store_true", help="replace a non-empty --out")
    revert.set_defaults(func=run_revert)

    diff = sub.add_parser("diff", help="compare two patches: where they write and how similar their updates are")
    diff.add_argument("a", type=Path)
    diff.add_argument("b", type=Path)
    diff.set_defaults(func=run_diff)

    norms = sub.add_parser(
        "norms", help="how far a stack of patches moves each matrix, and whether its deltas add up or cancel",
        description="For each matrix the patches touch, in stack order: each delta's ‖Δ‖/‖W₀‖, and after each patch "
        "‖ΣΔ‖/‖W₀‖ beside the orthogonal sum √(Σ‖Δ‖²)/‖W₀‖ (equal when the deltas are mutually orthogonal; above "
        "it they pile up, below it they cancel). A ROME patch has one delta per edit. Reads the model's weights; "
        "changes nothing.")
    add_common(norms)
    norms.add_argument("files", nargs="+", type=Path, metavar="PATCH", help="patch files, in the order they apply")
    norms.add_argument("--json", dest="norms_json", type=Path, default=None, metavar="FILE",
                       help="also write every delta's norm and the totals after each patch as JSON")
    norms.add_argument("--force", action="store_true", help="measure patches made on another model")
    norms.set_defaults(func=run_norms)

    restrain = sub.add_parser(
        "restrain", help="PRUNE: a patch that restrains what a stack of patches did to each matrix",
        description="Applies the patches in order and writes PRUNE's correction of the stack (Ma et al., ICLR "
        "2025): the singular values of each edited matrix's accumulated change above the original matrix's "
        "largest one are pulled back logarithmically. The correction applies on top of exactly that stack "
        "(`factpatch patch apply A.patch B.patch R.patch --out DIR`) and reverts like any patch "
        "(docs/mass-editing.md, \"PRUNE\").",
    )
    add_common(restrain)
    restrain.add_argument("files", nargs="+", type=Path, metavar="PATCH")
    restrain.add_argument("--save", type=Path, required=True, help="where to write the correction patch")
    restrain.add_argument("--base", type=float, default=1.2, help="α of log_α: larger restrains harder (default 1.2, the reference's)")
    restrain.set_defaults(func=run_restrain)


def run_show(args) -> int:
    from ..editing.patch import load_patch

    for path in args.files:
        patch = load_patch(path)
        if args.json:
            print(json.dumps({"file": str(path), "id": patch.id, **patch.meta}))
            continue
        meta = patch.meta
        print(f"{path}: {patch.describe()}")
        print(f"  model {meta.get('model')} (fingerprint {patch.fingerprint[:12]}), module {meta.get('module')}")
        print(f"  created {meta.get('created')}, format {meta.get('format_version')}")
        probs = meta.get("probabilities") or {}
        for text, before in (probs.get("before") or {}).items():
            after = (probs.get("after") or {}).get(text, {})
            moves = ", ".join(f"P({t}) {p:.3f} -> {after.get(t, float('nan')):.3f}" for t, p in before.items())
            print(f"  {text}: {moves}")
    return 0


def run_apply(args) -> int:
    from . import load_lm
    from ..editing.patch import export_model, load_patch, restore_stack

    patches = [load_patch(path) for path in args.files]
    lm = load_lm(args)
    stack = restore_stack(lm)
    for patch in patches:
        stack.apply(patch, force=args.force)
    export_model(lm, stack, args.out, force=args.force)
    for patch in stack.applied:
        print(f"applied {patch.describe()}")
    print(f"wrote {args.out}")
    return 0


def run_revert(args) -> int:
    from . import load_lm
    from ..editing.patch import export_model, restore_stack

    lm = load_lm(args)
    stack = restore_stack(lm)
    if not stack.applied:
        from ..core.errors import FactpatchError

        raise FactpatchError(f"{args.model} has no factpatch patches applied")
    removed = stack.revert() if args.all else [p for ident in args.patch for p in stack.revert(ident)]
    export_model(lm, stack, args.out, force=args.force)
    for patch in removed:
        print(f"reverted {patch.describe()}")
    print(f"wrote {args.out} ({len(stack.applied)} patches remain)")
    return 0


def run_diff(args) -> int:
    from ..editing.patch import load_patch

    a, b = load_patch(args.a), load_patch(args.b)
    print(f"A {a.describe()}\nB {b.describe()}")
    if a.fingerprint != b.fingerprint:
        print("made on different models")
    deltas_a, deltas_b = {d.param: d.tensor() for d in a.deltas}, {d.param: d.tensor() for d in b.deltas}
    for param in sorted(set(deltas_a) | set(deltas_b)):
        if param not in deltas_a or param not in deltas_b:
            print(f"{param}: only in {'A' if param in deltas_a else 'B'}")
            continue
        da, db = deltas_a[param].flatten().double(), deltas_b[param].flatten().double()
        cosine = float(torch.dot(da, db) / (da.norm() * db.norm()).clamp_min(1e-300))
        print(f"{param}: |A| {float(da.norm()):.4g}, |B| {float(db.norm()):.4g}, |A-B| {float((da - db).norm()):.4g}, cosine {cosine:.4f}")
    return 0


def run_norms(args) -> int:
    import logging
    import statistics

    from ..core.cache import write_text_atomic
    from ..core.errors import FactpatchError
    from . import load_lm
    from ..editing.norms import stack_norms
    from ..editing.patch import load_patch

    patches = [load_patch(path) for path in args.files]  # a bad file fails before the model loads
    lm = load_lm(args)
    for path, patch in zip(args.files, patches):
        if patch.fingerprint != lm.fingerprint:
            message = f"{path} was made on another model than {lm.name} (fingerprints differ)"
            if not args.force:
                raise FactpatchError(message + "; use --force to measure it anyway")
            logging.getLogger(__name__).warning("%s; measuring anyway (--force)", message)
    params = dict(lm.model.named_parameters())
    touched = {delta.param for patch in patches for delta in patch.deltas}
    result = stack_norms({name: params[name] for name in touched if name in params}, patches)
    for step, patch in zip(result.after_patch, patches):
        changes = ", ".join(f"{name} {step.weight_change[name]:.3f} ({step.orthogonal_sum[name]:.3f}; "
                            f"{step.deltas_so_far[name]} deltas)" for name in step.weight_change)
        print(f"{patch.id} {patch.meta.get('method', '?')}: |W-W0|/|W0| (orthogonal sum; deltas so far): {changes}")
    for name, values in result.per_delta.items():
        print(f"{name}: {len(values)} deltas, each |D|/|W0| median {statistics.median(values):.4f}, "
              f"largest {max(values):.4f}")
    if args.norms_json is not None:
        record = {"model": lm.name, "fingerprint": lm.fingerprint, "patches": [str(p) for p in args.files],
                  **result.to_dict()}
        write_text_atomic(args.norms_json, json.dumps(record, indent=1) + "\n")
        print(f"written {args.norms_json}")
    return 0


def run_restrain(args) -> int:
    from . import load_lm
    from ..editing.patch import load_patch, restore_stack, save_patch
    from ..editing.restrain import PruneParams, restraint_patch

    params = PruneParams(base=args.base)  # a bad --base fails before the model loads
    patches = [load_patch(path) for path in args.files]
    lm = load_lm(args)
    stack = restore_stack(lm)
    for patch in patches:
        stack.apply(patch)
    correction = restraint_patch(lm, stack, params)
    save_patch(correction, args.save)
    for name, found in correction.meta["restrained"].items():
        if found["restrained"]:
            print(f"{name}: {found['restrained']} singular values of the change above the original's largest "
                  f"({found['sigma_max_original']:.4g}); the largest {found['largest_before']:.4g} -> {found['largest_after']:.4g}")
        else:
            print(f"{name}: nothing above the original's largest singular value ({found['sigma_max_original']:.4g})")
    print(f"wrote {args.save}: {correction.describe()}")
    return 0
