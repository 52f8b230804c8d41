"""`factpatch edit` and `factpatch generate`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from ..core.errors import FactpatchError
from . import add_common, add_corpus_options, add_preset, corpus_spec


def register(commands) -> None:
    edit = commands.add_parser(
        "edit",
        help="rewrite facts (ROME, MEMIT, AlphaEdit, FT, FT+L) and show the probabilities move",
        description="Rewrite (subject, relation) -> target. One fact from --prompt/--subject/--target (ROME by "
        "default), or many from --requests FILE.jsonl (one {\"prompt\", \"subject\", \"target\"[, \"target_true\"]} "
        "a line) with any --method: MEMIT and AlphaEdit write the whole list as one batch, ROME and the "
        "fine-tuning methods edit it one request after another. Prints P(target) and P(target-true) before "
        "and after. edit_seconds counts the edit itself: not loading the model, not the key statistics or "
        "context prefixes (computed once and cached).",
    )
    add_common(edit)
    edit.add_argument("--prompt", help='relation template, e.g. "{} is located in the city of"')
    edit.add_argument("--subject", help='the subject, e.g. "Eiffel Tower"')
    edit.add_argument("--target", help="the new object, e.g. Rome")
    edit.add_argument("--target-true", default=None, help="the true object (default: the model's own top prediction)")
    edit.add_argument("--requests", type=Path, default=None, metavar="FILE.jsonl", help="many requests, one JSON object a line")
    edit.add_argument("--method", default="rome", help="rome (default), memit, alphaedit, ft, ft+l, attn")
    edit.add_argument("--probe", action="append", default=[], metavar="TEXT", help="another text to score (repeatable; one request only)")
    edit.add_argument("--layer", type=int, default=None, help="edit layer l* of ROME/FT (default: the model's)")
    edit.add_argument("--layers", default=None, metavar="A-B", help="MEMIT/AlphaEdit layer range, e.g. 1-5 (default: the model's)")
    edit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting, e.g. v_steps=10 (repeatable)")
    add_preset(edit)
    edit.add_argument("--patch", action="append", type=Path, default=[], metavar="FILE",
                      help="apply these patches first (stacking edits; AlphaEdit protects theirs)")
    edit.add_argument("--save", type=Path, default=None, metavar="FILE", help="save the edit as a patch file")
    add_corpus_options(edit)
    edit.add_argument("--json", action="store_true", help="print one JSON object")
    edit.set_defaults(func=run_edit)

    generate = commands.add_parser("generate", help="sample texts before and after patches, side by side")
    add_common(generate)
    generate.add_argument("--patch", action="append", type=Path, default=[], metavar="FILE", help="patch file (repeatable)")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--n", type=int, default=3, help="texts per side (default 3)")
    generate.add_argument("--max-new-tokens", type=int, default=60)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--force", action="store_true", help="apply patches made on another model")
    generate.add_argument("--json", action="store_true", help="print one JSON object")
    generate.set_defaults(func=run_generate)


def _load_with_patches(args, force: bool = False):
    from . import load_lm
    from ..editing.patch import load_patch, restore_stack

    patches = [load_patch(path) for path in args.patch]  # fail on a bad file before loading the model
    lm = load_lm(args)
    stack = restore_stack(lm)
    for patch in patches:
        stack.apply(patch, force=force)
    return lm, stack, patches


def _settings(args) -> dict[str, str]:
    """--set KEY=VALUE (or METHOD.KEY=VALUE) and --layer/--layers as the method's overrides."""
    from ..editing.registry import METHODS, parse_overrides, preset_settings

    items = [item if item.partition("=")[0].partition(".")[1] else f"{args.method}.{item}" for item in args.set]
    overrides = parse_overrides(items)
    unknown = set(overrides) - {args.method}
    if unknown:
        raise FactpatchError(f"--set names method {sorted(unknown)[0]!r}, but --method is {args.method!r}")
    preset_settings(args.preset)  # an unknown name fails now; method_params applies it for the loaded model
    mine = overrides.get(args.method, {})
    fields = METHODS[args.method].params_cls.__dataclass_fields__
    if args.layer is not None:
        if "layer" not in fields:
            raise FactpatchError(f"--layer is for one-layer methods; {args.method} takes --layers A-B")
        mine["layer"] = str(args.layer)
    if args.layers is not None:
        if "layers" not in fields:
            raise FactpatchError(f"--layers is for MEMIT and AlphaEdit; {args.method} takes --layer N")
        mine["layers"] = args.layers
    parse_overrides([f"{args.method}.{k}={v}" for k, v in mine.items()])  # check every value now
    return mine


def _preset_note(args, lm, params) -> str:
    """What `--preset` set, said beside the result: those are not the paper's settings."""
    from ..editing.registry import preset_for

    if not args.preset:
        return ""
    keys, emulated = preset_for(lm, args.preset, args.method)
    emulated = [key for key in emulated if getattr(params, key) != "bfloat16"]  # not one --set chose
    kept = f"; {', '.join(emulated)} stays float32 (bfloat16 is emulated on this {lm.device.type})" if emulated else ""
    if not keys:
        return f"; preset {args.preset} sets nothing for {args.method}{kept}"
    shown = ", ".join(f"{key} {getattr(params, key)}" for key in keys)
    return f"; preset {args.preset}: {shown} (not the paper's settings){kept}"


def run_edit(args) -> int:
    from ..editing.registry import METHODS
    from ..editing.request import EditRequest, read_requests

    if args.method not in METHODS or args.method == "none":
        raise FactpatchError(f"unknown method {args.method!r}: choose from {', '.join(m for m in METHODS if m != 'none')}")
    single = [args.prompt, args.subject, args.target]
    if args.requests is not None:
        if any(v is not None for v in single):
            raise FactpatchError("give either --requests FILE or --prompt/--subject/--target, not both")
        requests = read_requests(args.requests)
    elif any(v is None for v in single):
        raise FactpatchError("give --prompt, --subject and --target (or --requests FILE.jsonl)")
    else:
        requests = [EditRequest.from_text(args.prompt, args.subject, args.target, args.target_true)]
    if args.probe and len(requests) > 1:
        raise FactpatchError("--probe goes with a single request")
    corpus = corpus_spec(args)
    if args.save is not None and args.save.is_dir():
        raise FactpatchError(f"--save wants a file name, {args.save} is a directory")
    overrides = _settings(args)
    if args.method == "rome" and args.requests is None:
        return _edit_one(args, requests[0], overrides, corpus)
    return _edit_many(args, requests, overrides, corpus)


def _edit_one(args, request, overrides: dict, corpus) -> int:
    from ..api import edit
    from ..editing.patch import save_patch
    from ..editing.registry import method_params

    lm, stack, _ = _load_with_patches(args)
    hp = method_params(lm, "rome", overrides, args.preset)
    result = edit(lm, request, stack, args.probe, hp, corpus, args.cache_dir, not args.quiet)
    saved = str(save_patch(result.patch, args.save)) if args.save else None
    if args.json:
        print(json.dumps({
            "before": result.before, "after": result.after, "edit_seconds": round(result.edit_seconds, 3),
            "layer": result.layer, "patch": saved,
        }))
        return 0
    new, true = result.request.target_new, result.request.target_true
    print(f"ROME edit on {lm.name}, layer {result.layer}: {result.request.text} -> {new} (was {true})")
    width = max(len(text) for text in result.before)
    print(f"{'':<{width}}  {'P(' + new + ')':>22}  {'P(' + true + ')':>22}")
    for text in result.before:
        b, a = result.before[text], result.after[text]
        print(f"{text:<{width}}  {b[new]:>9.4f} -> {a[new]:<9.4f}  {b[true]:>9.4f} -> {a[true]:<9.4f}")
    print(f"edit took {result.edit_seconds:.2f} s (k*, v* and the update)" + _preset_note(args, lm, hp))
    print(f"patch {result.patch.id}" + (f" saved to {saved}" if saved else " (not saved: use --save FILE)"))
    return 0


def _edit_many(args, requests, overrides: dict, corpus) -> int:
    from ..api import edit_many
    from ..editing.patch import save_patch
    from ..editing.registry import edit_layers, method_params

    lm, stack, _ = _load_with_patches(args)
    params = method_params(lm, args.method, overrides, args.preset)
    result = edit_many(lm, requests, args.method, stack, params, args.cache_dir, not args.quiet, corpus=corpus)
    saved = str(save_patch(result.patch, args.save)) if args.save else None
    layers = edit_layers(params)
    wins = [o.after[o.request.target_new] > o.after[o.request.target_true] for o in result.outcomes
            if o.request.target_true is not None]
    if args.json:
        print(json.dumps({
            "method": args.method, "layers": layers, "n": len(requests), "edit_seconds": round(result.edit_seconds, 3),
            "patch": saved, "patch_id": result.patch.id, "requests": [o.to_dict() for o in result.outcomes],
        }))
        return 0
    where = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}-{layers[-1]}"
    print(f"{args.method} on {lm.name}, {where}: {len(requests)} request(s)")
    shown = result.outcomes[:20]
    width = min(60, max(len(o.request.text) for o in shown))
    print(f"{'prompt':<{width}}  {'P(target)':>20}  {'P(target-true)':>20}")
    for o in shown:
        new, true = o.request.target_new, o.request.target_true
        line = f"{o.request.text[:width]:<{width}}  {o.before[new]:>8.4f} -> {o.after[new]:<8.4f}"
        if true is not None:
            line += f"  {o.before[true]:>8.4f} -> {o.after[true]:<8.4f}"
        print(line + f"  ({new})")
    if len(result.outcomes) > len(shown):
        print(f"... and {len(result.outcomes) - len(shown)} more (--json prints every request)")
    mean_before = sum(o.before[o.request.target_new] for o in result.outcomes) / len(result.outcomes)
    mean_after = sum(o.after[o.request.target_new] for o in result.outcomes) / len(result.outcomes)
    if args.preset:
        print(_preset_note(args, lm, params).strip("; "))
    print(f"mean P(target) {mean_before:.4f} -> {mean_after:.4f}", end="")
    print(f"; target beats target-true on {sum(wins)} of {len(wins)}" if wins else "")
    print(f"edit took {result.edit_seconds:.2f} s ({result.edit_seconds / len(requests):.2f} s a request)")
    print(f"patch {result.patch.id}" + (f" saved to {saved}" if saved else " (not saved: use --save FILE)"))
    return 0


def run_generate(args) -> int:
    from ..core.errors import FactpatchError
    from ..core.generate import generate_texts

    if args.n < 1 or args.max_new_tokens < 1:
        raise FactpatchError("--n and --max-new-tokens must be at least 1")
    if not args.prompt.strip():
        raise FactpatchError("prompt is empty")
    lm, stack, _ = _load_with_patches(args, args.force)
    after = generate_texts(lm, [args.prompt], args.n, args.max_new_tokens, args.seed)[0]
    restored = stack.revert()
    before = generate_texts(lm, [args.prompt], args.n, args.max_new_tokens, args.seed)[0]
    for patch in restored:
        stack.apply(patch, force=True)  # leave the model as it was loaded (already checked once)
    if args.json:
        print(json.dumps({"prompt": args.prompt, "patches": [p.id for p in restored], "before": before, "after": after}))
        return 0
    label = ", ".join(p.describe() for p in restored) or "no patches"
    for i, (b, a) in enumerate(zip(before, after), 1):
        print(f"--- sample {i} ---")
        print("before:\n" + textwrap.indent(textwrap.fill(b, 100), "  "))
        print(f"after ({label}):\n" + textwrap.indent(textwrap.fill(a, 100), "  "))
    return 0
