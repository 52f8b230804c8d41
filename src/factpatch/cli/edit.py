"""`factpatch edit` and `factpatch generate`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from . import add_common


def register(commands) -> None:
    edit = commands.add_parser(
        "edit",
        help="rewrite one fact with ROME and show the probabilities move",
        description="Rewrite (subject, relation) -> target with ROME. Prints P(target) and P(target-true) on the "
        "prompt and each probe, before and after. edit_seconds counts computing k*, v* and the update only: "
        "not loading the model, not the key statistics or context prefixes (computed once and cached).",
    )
    add_common(edit)
    edit.add_argument("--prompt", required=True, help='relation template, e.g. "{} is located in the city of"')
    edit.add_argument("--subject", required=True, help='the subject, e.g. "Eiffel Tower"')
    edit.add_argument("--target", required=True, help="the new object, e.g. Rome")
    edit.add_argument("--target-true", default=None, help="the true object (default: the model's own top prediction)")
    edit.add_argument("--probe", action="append", default=[], metavar="TEXT", help="another text to score (repeatable)")
    edit.add_argument("--layer", type=int, default=None, help="edit layer l* (default: the model's)")
    edit.add_argument("--patch", action="append", type=Path, default=[], metavar="FILE",
                      help="apply these patches first (stacking edits)")
    edit.add_argument("--save", type=Path, default=None, metavar="FILE", help="save the edit as a patch file")
    edit.add_argument("--corpus", type=Path, default=None, help="key-statistics corpus (default: self-sampled)")
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
    from ..models import load_model
    from ..patch import load_patch, restore_stack

    patches = [load_patch(path) for path in args.patch]  # fail on a bad file before loading the model
    lm = load_model(args.model, args.cache_dir)
    stack = restore_stack(lm)
    for patch in patches:
        stack.apply(patch, force=force)
    return lm, stack, patches


def run_edit(args) -> int:
    from ..api import edit
    from ..errors import FactpatchError
    from ..patch import save_patch
    from ..rome import EditRequest, hparams_for
    from ..stats import CorpusSpec

    request = EditRequest.from_text(args.prompt, args.subject, args.target, args.target_true)
    if args.corpus is not None and not args.corpus.is_file():
        raise FactpatchError(f"corpus file not found: {args.corpus}")
    if args.save is not None and args.save.is_dir():
        raise FactpatchError(f"--save wants a file name, {args.save} is a directory")
    lm, stack, _ = _load_with_patches(args)
    hp = hparams_for(lm, layer=args.layer)
    result = edit(lm, request, stack, args.probe, hp, CorpusSpec(args.corpus), args.cache_dir, not args.quiet)
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
    print(f"edit took {result.edit_seconds:.2f} s (k*, v* and the update)")
    print(f"patch {result.patch.id}" + (f" saved to {saved}" if saved else " (not saved: use --save FILE)"))
    return 0


def run_generate(args) -> int:
    from ..errors import FactpatchError
    from ..generate import generate_texts

    if args.n < 1 or args.max_new_tokens < 1:
        raise FactpatchError("--n and --max-new-tokens must be at least 1")
    if not args.prompt.strip():
        raise FactpatchError("prompt is empty")
    lm, stack, patches = _load_with_patches(args, args.force)
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
