"""`factpatch eval` (and `eval merge`, `eval status`, `eval curves`) and `factpatch compare`: thin layers over factpatch.evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import add_common, add_corpus_options, add_preset, add_ray_options, corpus_spec, ray_settings

# The sequential protocol of the AlphaEdit paper's tables (2,000 edits in batches of 100). Unset
# (None) on the parser, so that a single-edit run can tell it was given and refuse it.
DEFAULT_BATCH_SIZE = 100

EVAL_EPILOG = """\
datasets: counterfact:PATH (original or flattened CounterFact), zsre:PATH (MEND layout), builtin
methods:  rome, memit, alphaedit, ft, ft+l, attn, none
examples:
  factpatch eval --methods rome,ft+l,none --dataset builtin --n 50 --out runs/builtin
  factpatch eval --dataset counterfact:cf.json --shard 0/2 --out runs/s0   (and --shard 1/2 --out runs/s1)
  factpatch eval merge runs/s0 runs/s1 --out runs/all
  factpatch eval --methods rome,none --dataset counterfact:cf.json --out runs/cf --ray auto --workers 8
  factpatch eval --sequential --methods alphaedit,memit,rome --dataset counterfact:cf.json --n 2000 \\
      --batch-size 100 --checkpoint-every 500 --known known_1000.json --out runs/seq
  factpatch eval status runs/seq          (what a run has done and has left; safe beside the run)
  factpatch eval curves runs/seq-a runs/seq-b --names smollm2,gemma3 --out both.pdf   (runs on one figure)
"""


def register(commands) -> None:
    ev = commands.add_parser(
        "eval",
        help="measure editing methods on CounterFact / zsRE (resumable, with 95 %% intervals)",
        description="Run each method on each case and write DIR/results.jsonl (one line per case and method, "
        "resumed on rerun), DIR/summary.json|.md|.csv and DIR/summary.png. `eval merge DIR... --out DIR` "
        "combines shards; `eval status DIR` says what a run has done and has left; `eval curves DIR... --out FIG` "
        "draws sequential runs on one figure.",
        epilog=EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(ev)
    ev.add_argument("--methods", default="rome,ft,ft+l,attn,none", help="comma-separated (default all five)")
    ev.add_argument("--dataset", default=None, help="counterfact:PATH, zsre:PATH or builtin")
    ev.add_argument("--n", type=int, default=None, help="first N cases of the data set (default all); rerun with a larger N to extend a run")
    ev.add_argument("--shard", default=None, metavar="I/K", help="every K-th case from the I-th (0 <= I < K)")
    ev.add_argument("--zsre-target", default="paper", metavar="paper|alt",
                    help="how zsRE records become edits: paper = towards answers[0], '?' after the NQ question "
                    "(the ROME paper's dsets/zsre.py, default); alt = towards `alt` (MEND, EasyEdit)")
    gen = ev.add_argument_group("generation (fluency and consistency; defaults: the paper's generate_fast)")
    gen.add_argument("--generation", action="store_true", help="also sample texts: fluency and consistency")
    gen.add_argument("--top-k", type=int, default=5, help="top-k sampling (default 5, the paper's)")
    gen.add_argument("--max-length", type=int, default=100,
                     help="tokens per text including its prompt (default 100, the paper's)")
    gen.add_argument("--max-new-tokens", type=int, default=None,
                     help="instead of --max-length: new tokens per text (factpatch's earlier setting was 100)")
    gen.add_argument("--max-prompts", type=int, default=None,
                     help="generation prompts per case (default all of them, as the paper)")
    ev.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ev.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="override a method setting, e.g. ft+l.norm_constraint=1e-3 (repeatable)")
    add_preset(ev)
    ev.add_argument("--out", type=Path, default=None, help="result directory")
    seq = ev.add_argument_group("sequential editing (MEMIT/AlphaEdit protocol: many edits, never reverted)")
    seq.add_argument("--sequential", action="store_true",
                     help="edit the first --n cases in batches without reverting, then score every edited case "
                     "on the final model (resumable: the patch stack in DIR is the checkpoint)")
    seq.add_argument("--batch-size", type=int, default=None, help=f"edits per batch (default {DEFAULT_BATCH_SIZE})")
    seq.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                     help="also score the cases edited so far every K edits: DIR/curves.csv|png")
    seq.add_argument("--known", type=Path, default=None, metavar="FILE",
                     help="known_1000-style facts: the share the model still knows at each checkpoint")
    seq.add_argument("--generation-cases", type=int, default=0, metavar="N",
                     help="score the generations of the first N edited cases on the final model (fluency)")
    add_corpus_options(seq)
    _add_threads(ev)
    add_ray_options(ev)
    ev.set_defaults(func=run_eval)
    sub = ev.add_subparsers(dest="eval_command", metavar="merge|status|curves|paired|blocks|rebuild")
    merge = sub.add_parser("merge", help="combine result directories (shards, or methods run apart)")
    merge.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    merge.add_argument("--out", dest="merge_out", type=Path, required=True, help="new directory for the merged results")
    merge.add_argument("--quiet", action="store_true")
    merge.set_defaults(func=run_merge)
    status = sub.add_parser("status", help="what a result directory's run has done and has left (reads, never writes)")
    status.add_argument("status_dirs", type=Path, nargs="+", metavar="DIR",
                        help="one or more result directories (e.g. runs/seq-*): a report each")
    status.add_argument("--json", action="store_true",
                        help="the same as one JSON object (a list of them for several directories)")
    status.set_defaults(func=run_status)
    curves = sub.add_parser(
        "curves", help="sequential runs' curves on one figure: metric against edits, a line style per run",
        description="Each metric of one or more sequential runs against the number of edits, with 95 % intervals: "
        "a method keeps its colour in every run, each run has its own line style. Reads, never writes the runs.")
    curves.add_argument("curve_dirs", nargs="+", type=Path, metavar="DIR", help="result directories of eval --sequential")
    curves.add_argument("--out", dest="curves_out", type=Path, required=True, metavar="FIG",
                        help="the figure: .png, .svg or .pdf")
    curves.add_argument("--names", default=None, metavar="A,B", help="comma-separated label per DIR (default: the directory names)")
    curves.add_argument("--methods", dest="curve_methods", default=None, metavar="M,M",
                        help="comma-separated methods to draw (default: each run's own)")
    curves.add_argument("--cases", dest="curve_cases", default=None, metavar="A-B",
                        help="means over the cases at positions A to B only (e.g. 0-499: how the first 500 edits "
                        "hold as later batches land)")
    curves.add_argument("--csv", dest="curves_csv", type=Path, default=None, metavar="FILE",
                        help="also write the points (run, method, edits, means and intervals) as CSV")
    curves.add_argument("--title", default=None)
    curves.set_defaults(func=run_curves)
    pair = sub.add_parser(
        "paired", help="two methods or two runs on the cases both scored: each metric's paired difference B - A",
        description="Each metric's mean on each side and the mean of the per-case differences B - A, each with its "
        "bootstrap 95 % interval, over the cases both sides scored. The sides: one directory and two methods "
        "(--method, --method-b), or two directories. Reads, never writes the runs.")
    pair.add_argument("pair_dirs", nargs="+", type=Path, metavar="DIR", help="A's directory, and B's if it is another")
    pair.add_argument("--method", dest="pair_method", required=True, help="A's method")
    pair.add_argument("--method-b", dest="pair_method_b", default=None, help="B's method (default: A's)")
    pair.add_argument("--edits", dest="pair_edits", type=int, default=None, metavar="N",
                      help="a sequential run's checkpoint (default: the latest both sides have scored)")
    pair.add_argument("--cases", dest="pair_cases", default=None, metavar="A-B", help="the cases at positions A to B only")
    pair.add_argument("--json", dest="pair_json", type=Path, default=None, metavar="FILE", help="also write the result as JSON")
    pair.set_defaults(func=run_paired)
    block = sub.add_parser(
        "blocks", help="a sequential run's cases in blocks of edit order: how the oldest edits hold against the newest",
        description="One method's means with 95 % intervals over each block of consecutive cases (positions 0 to "
        "SIZE-1, SIZE to 2 SIZE-1, ...) at one checkpoint. Reads, never writes the run.")
    block.add_argument("blocks_dir", type=Path, metavar="DIR")
    block.add_argument("--method", dest="blocks_method", required=True)
    block.add_argument("--edits", dest="blocks_edits", type=int, default=None, metavar="N",
                       help="the checkpoint (default: the method's latest)")
    block.add_argument("--size", type=int, default=100, help="cases a block (default 100: a batch of the default run)")
    block.add_argument("--csv", dest="blocks_csv", type=Path, default=None, metavar="FILE", help="also write the rows as CSV")
    block.set_defaults(func=run_blocks)
    rebuild = sub.add_parser(
        "rebuild", help="write a sequential run's missing MEMIT/AlphaEdit patch files from the z its batches saved",
        description="Patch stacks are not versioned; each MEMIT/AlphaEdit batch's z is (METHOD/targets/). This "
        "rebuilds the missing patch files in order, with the run's recorded settings, and checks each against the "
        "id its batch record holds (seconds to a minute a batch instead of minutes). Edits and scores nothing else.")
    rebuild.add_argument("rebuild_dir", type=Path, metavar="DIR", help="a result directory of eval --sequential")
    rebuild.add_argument("--methods", dest="rebuild_methods", required=True, metavar="M,M", help="comma-separated")
    rebuild.add_argument("--accept-drift", action="store_true",
                         help="write a patch whose id differs from its batch record's (another machine's floating "
                         "point) under its own id, logging how far the stack strays from the record: for studying "
                         "the stack, not for resuming the run")
    rebuild.add_argument("--edits", dest="rebuild_edits", type=int, default=None, metavar="N",
                         help="only the batches of the first N edits (what a study of the stack at N needs)")
    rebuild.add_argument("--cache-dir", type=Path, default=None)
    rebuild.add_argument("--quiet", action="store_true")
    rebuild.set_defaults(func=run_rebuild)

    cmp = commands.add_parser(
        "compare",
        help="texts generated after each method's edit, side by side (Markdown, HTML, JSONL)",
        description="Apply each method's edit in turn and sample texts from the case's generation prompts with one "
        "seed. Writes DIR/compare.md, DIR/compare.html and DIR/compare.jsonl (the human-evaluation study reads it).",
    )
    add_common(cmp)
    cmp.add_argument("--case", default=None, help="case id in --dataset (repeatable as a comma list)")
    cmp.add_argument("--dataset", default=None, help="counterfact:PATH or builtin")
    cmp.add_argument("--prompt", default=None, help='or an ad-hoc edit: relation template "{} is located in"')
    cmp.add_argument("--subject", default=None)
    cmp.add_argument("--target", default=None, help="the new object")
    cmp.add_argument("--target-true", default=None, help="the true object (default: the model's prediction)")
    cmp.add_argument("--gen-prompt", action="append", default=[], metavar="TEXT",
                     help="generation prompt for an ad-hoc edit (repeatable; default the edit prompt and '<subject> is')")
    cmp.add_argument("--methods", default="rome,ft+l,none", help="comma-separated (default rome,ft+l,none)")
    cmp.add_argument("--n", type=int, default=3, help="texts per method and prompt (default 3)")
    cmp.add_argument("--max-new-tokens", type=int, default=100)
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE")
    add_preset(cmp)
    cmp.add_argument("--out", type=Path, required=True, help="output directory")
    _add_threads(cmp)
    cmp.set_defaults(func=run_compare)


def _add_threads(parser) -> None:
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for torch (default: torch's). On a busy machine 1 can be several times faster",
    )


def _set_threads(args) -> None:
    from ..core.errors import FactpatchError

    if args.threads is not None:
        if args.threads < 1:
            raise FactpatchError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def run_eval(args) -> int:
    from ..core.errors import FactpatchError
    from ..core.runstore import refuse_if_being_written
    from . import load_lm
    from ..editing.registry import parse_methods, parse_overrides, preset_settings
    from ..evaluation.data import load_dataset, parse_shard
    from ..evaluation.run import EvalSettings
    from ..evaluation.run import run_eval as evaluate

    # Everything that can be checked without the model is checked first.
    if args.dataset is None:
        raise FactpatchError("--dataset is required (counterfact:PATH, zsre:PATH or builtin)")
    if args.out is None:
        raise FactpatchError("--out DIR is required")
    methods = parse_methods(args.methods)
    overrides = parse_overrides(args.set)
    preset_settings(args.preset)  # an unknown name fails now, before a model is loaded
    shard = parse_shard(args.shard)
    if args.n is not None and args.n < 1:
        raise FactpatchError(f"--n must be at least 1, got {args.n}")
    cluster = ray_settings(args)
    refuse_if_being_written(args.out)  # a run still going is told now, not after the model has loaded
    if args.sequential:
        return _run_sequential(args, methods, overrides, cluster)
    given = [flag for flag, value in (("--batch-size", args.batch_size), ("--checkpoint-every", args.checkpoint_every),
                                      ("--known", args.known), ("--generation-cases", args.generation_cases or None),
                                      ("--corpus", args.corpus), ("--corpus-tokens", args.corpus_tokens))
             if value is not None]
    if given:  # a single-edit run would ignore them: say so rather than run what was not asked for
        raise FactpatchError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --sequential")
    config = EvalSettings(methods, args.n, shard, args.generation, args.seed, overrides, _generation_settings(args),
                          args.preset)
    dataset = load_dataset(args.dataset, args.zsre_target)
    _set_threads(args)
    if cluster is not None:
        from ..evaluation.distributed import run_eval_ray

        run = run_eval_ray(args.model, dataset, config, args.out, cluster, args.cache_dir, not args.quiet).run
    else:
        lm = load_lm(args)
        run = evaluate(lm, dataset, config, args.out, args.cache_dir, not args.quiet)
    print(_report(run))
    return 0


def _generation_settings(args):
    from ..evaluation.generation import GenerationSettings

    return GenerationSettings(
        top_k=args.top_k, max_length=args.max_length, max_new_tokens=args.max_new_tokens, max_prompts=args.max_prompts
    )


def _run_sequential(args, methods, overrides, cluster=None) -> int:
    from ..core.errors import FactpatchError
    from . import load_lm
    from ..evaluation.data import load_dataset
    from ..evaluation.sequential import SequentialSettings, run_sequential

    if args.n is None:
        raise FactpatchError("--sequential needs --n (how many cases to edit)")
    if args.shard is not None:
        raise FactpatchError("--sequential edits one stack in order: it cannot be sharded")
    corpus = corpus_spec(args)
    config = SequentialSettings(
        methods, args.n, DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size, args.checkpoint_every, args.generation_cases, args.known,
        seed=args.seed, overrides=overrides, gen=_generation_settings(args),
        corpus=corpus, preset=args.preset,
    )
    dataset = load_dataset(args.dataset, args.zsre_target)
    _set_threads(args)
    lm = load_lm(args)
    if cluster is not None:
        from ..evaluation.distributed import run_sequential_ray

        run = run_sequential_ray(lm, args.model, dataset, config, args.out, cluster, args.cache_dir, not args.quiet).run
    else:
        run = run_sequential(lm, dataset, config, args.out, args.cache_dir, not args.quiet)
    print(_sequential_report(run, config, dataset.kind))
    return 0


def _sequential_report(run, config, kind: str) -> str:
    from ..evaluation.summary import summary_table

    lines = [f"{config.n} sequential edits in batches of {config.batch_size}: every edited case scored on the final model",
             "", summary_table(run.summary, kind), ""]
    for method, health in run.final_health.items():
        known = ""
        if health.get("known_share") is not None:
            known = (f", knows {100 * health['known_share']:.1f} % of the known-facts file" if method == "unedited"
                     else f", still knows {100 * health['known_share']:.1f} % of the facts it knew (subjects not edited)")
        lines.append(f"{method}: perplexity {health['perplexity']:.2f} on a fixed sampled text{known}")
    lines.append(f"results in {run.out_dir} (summary.md, curves.png, curves.csv, health.jsonl)")
    return "\n".join(lines)


def run_merge(args) -> int:
    from ..evaluation.run import merge_runs

    run = merge_runs(args.dirs, args.merge_out)
    print(_report(run))
    return 0


def run_status(args) -> int:
    from ..evaluation.status import progress_lines, run_progress

    reports = [run_progress(directory) for directory in args.status_dirs]  # every one read before any is printed
    if args.json:
        data = [r.to_dict() for r in reports]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        print("\n\n".join("\n".join(progress_lines(r)) for r in reports))
    return 0


def run_rebuild(args) -> int:
    from ..core.errors import FactpatchError
    from . import load_lm
    from ..core.runstore import refuse_if_being_written
    from ..editing.registry import parse_methods
    from ..evaluation.run import read_config
    from ..evaluation.sequential import rebuild_patches

    methods = parse_methods(args.rebuild_methods)
    if args.rebuild_edits is not None and args.rebuild_edits < 1:
        raise FactpatchError(f"--edits must be at least 1, got {args.rebuild_edits}")
    config = read_config(args.rebuild_dir)
    refuse_if_being_written(args.rebuild_dir)
    lm = load_lm(args, config["model"])
    for method in methods:
        written = rebuild_patches(lm, args.rebuild_dir, method, args.cache_dir, not args.quiet, args.accept_drift,
                                  args.rebuild_edits)
        print(f"{method}: {len(written)} patch files rebuilt in {args.rebuild_dir / method / 'patches'}")
    return 0


def run_curves(args) -> int:
    from ..core.errors import FactpatchError
    from ..evaluation.curves import case_range, figure_format, load_run_curves, plot_runs

    figure_format(args.curves_out)
    cases = case_range(args.curve_cases) if args.curve_cases else None
    names = args.names.split(",") if args.names else [None] * len(args.curve_dirs)
    if len(names) != len(args.curve_dirs):
        raise FactpatchError(f"--names gives {len(names)} names for {len(args.curve_dirs)} directories")
    methods = [m.strip() for m in args.curve_methods.split(",")] if args.curve_methods else None
    runs = [load_run_curves(d, name, methods, cases) for d, name in zip(args.curve_dirs, names)]
    path = plot_runs(runs, args.curves_out, args.curves_csv, args.title)
    points = sum(1 for run in runs for row in run.rows if row["edits"] > 0)
    print(f"{path}: {points} checkpoints of {len(runs)} run(s)" + (f"; points in {args.curves_csv}" if args.curves_csv else ""))
    return 0


def run_paired(args) -> int:
    from ..core.cache import write_text_atomic
    from ..core.errors import FactpatchError
    from ..evaluation.breakdown import compare_sides, estimate_text
    from ..evaluation.curves import case_range

    if len(args.pair_dirs) > 2:
        raise FactpatchError(f"eval paired compares two sides: one or two directories, not {len(args.pair_dirs)}")
    dir_a, dir_b = args.pair_dirs[0], args.pair_dirs[-1]
    method_b = args.pair_method_b or args.pair_method
    if dir_a == dir_b and method_b == args.pair_method:
        raise FactpatchError("both sides are the same: give a second directory or --method-b")
    cases = case_range(args.pair_cases) if args.pair_cases else None
    result = compare_sides(dir_a, args.pair_method, dir_b, method_b, args.pair_edits, cases)
    print(f"{result.cases} cases scored on both sides; A = {result.a.label}, B = {result.b.label}")
    for name, m in result.metrics.items():
        line = f"  {name}: A {estimate_text(m.a)}   B {estimate_text(m.b)}   B - A {estimate_text(m.b_minus_a, signed=True)}"
        if m.relative is not None:
            line += f" = {estimate_text(m.relative, signed=True)} %"
        if m.a.n != result.cases:  # measured on a sample of the cases
            line += f"   ({m.a.n} cases)"
        print(line)
    if result.known is not None:
        k = result.known
        print(f"  known facts kept: A {estimate_text(k.a)}   B {estimate_text(k.b)}   "
              f"B - A {estimate_text(k.b_minus_a, signed=True)}   ({k.a.n} facts, paired by fact)")
    if result.known_logprob is not None:
        k = result.known_logprob
        print(f"  known facts' answer log-prob change (nats): A {estimate_text(k.a, 1.0, True, 2)}   "
              f"B {estimate_text(k.b, 1.0, True, 2)}   B - A {estimate_text(k.b_minus_a, 1.0, True, 2)}   "
              f"({k.a.n} facts, paired by fact)")
    if args.pair_json is not None:
        write_text_atomic(args.pair_json, json.dumps(result.to_dict(), indent=1) + "\n")
        print(f"written {args.pair_json}")
    return 0


def run_blocks(args) -> int:
    from ..core.cache import write_text_atomic
    from ..evaluation.breakdown import blocks, blocks_csv, blocks_text, load_side

    side = load_side(args.blocks_dir, args.blocks_method, args.blocks_edits)
    rows = blocks(side, args.size)
    print(blocks_text(side, rows, args.size))
    if args.blocks_csv is not None:
        write_text_atomic(args.blocks_csv, blocks_csv(side, rows))
        print(f"written {args.blocks_csv}")
    return 0


def _report(run) -> str:
    from ..evaluation.summary import summary_table

    config = json.loads((run.out_dir / "config.json").read_text())
    cases = len({r["case_id"] for r in run.records})
    lines = [
        f"{config['model']} on {config['dataset']['name']}: {cases} cases, {len(run.records)} results "
        f"({run.new_records} new) in {run.out_dir}",
        "",
        summary_table(run.summary, config["dataset"]["kind"]),
    ]
    return "\n".join(lines)


def run_compare(args) -> int:
    from ..core.errors import FactpatchError
    from . import load_lm
    from ..editing.registry import parse_methods, parse_overrides, preset_settings
    from ..editing.request import EditRequest
    from ..evaluation.compare import CompareSettings, compare_case, write_outputs
    from ..evaluation.data import Case, load_dataset
    from ..evaluation.metrics import top_prediction

    methods = parse_methods(args.methods)
    overrides = parse_overrides(args.set)
    preset_settings(args.preset)  # an unknown name fails now, before a model is loaded
    settings = CompareSettings(n=args.n, max_new_tokens=args.max_new_tokens, seed=args.seed)
    adhoc = any(v is not None for v in (args.prompt, args.subject, args.target))
    if adhoc == (args.case is not None):
        raise FactpatchError("give either --case ID with --dataset, or --prompt, --subject and --target")
    cases: list[Case] = []
    request = None
    if adhoc:
        if None in (args.prompt, args.subject, args.target):
            raise FactpatchError("an ad-hoc edit needs --prompt, --subject and --target")
        request = EditRequest.from_text(args.prompt, args.subject, args.target, args.target_true)
    else:
        if args.dataset is None:
            raise FactpatchError("--case needs --dataset")
        dataset = load_dataset(args.dataset)
        if dataset.kind != "counterfact":
            raise FactpatchError("compare needs CounterFact cases (zsRE has no generation prompts)")
        cases = [dataset.find(c.strip()) for c in args.case.split(",") if c.strip()]
    _set_threads(args)
    lm = load_lm(args)
    if request is not None:
        if request.target_true is None:
            guess = top_prediction(lm, request.text)
            if guess.strip() != request.target_new.strip():
                request = EditRequest(request.prompt, request.subject, request.target_new, guess)
        prompts = tuple(args.gen_prompt) or (request.text, f"{request.subject} is")
        cases = [Case("adhoc", "counterfact", request, generation_prompts=prompts)]
        settings = CompareSettings(settings.n, settings.max_new_tokens, len(prompts), settings.seed)
    editors: dict = {}
    records = [compare_case(lm, case, methods, settings, editors, overrides, args.cache_dir, not args.quiet, args.preset)
               for case in cases]
    paths = write_outputs(records, args.out)
    for record in records:
        print(f"case {record['case_id']}: {record['counterfactual']}")
        for sample in record["samples"]:
            print(f"  prompt: {sample['prompt']}")
            for method, texts in sample["texts"].items():
                print(f"    {method}: {' '.join(texts[0].split())[:160]}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
