"""The command line on a tiny model directory: output shapes, and bad input → one line, exit ≠ 0."""

import json

import pytest

from factpatch.core.models import EMBEDDED

from tiny import CORPUS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join(CORPUS * 3))
    return path


def _edit_args(tiny_dir, corpus, **over):
    args = {"--model": tiny_dir, "--prompt": "{} is located in the city of", "--subject": "Eiffel Tower",
            "--target": "Rome", "--target-true": "Paris", "--corpus": corpus, "--layer": 1, "--quiet": None}
    args.update(over)
    flat = []
    for key, value in args.items():
        if value is False:
            continue
        flat.append(key)
        if value is not None:
            flat.append(value)
    return flat


def test_edit_json_save_show_apply_revert(run, tiny_dir, corpus, tmp_path):
    patch_file = tmp_path / "edit.safetensors"
    code, out, err = run("edit", *_edit_args(tiny_dir, corpus, **{"--probe": "The Eiffel Tower is in"}),
                         "--json", "--save", patch_file)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"before", "after", "edit_seconds", "layer", "patch"}
    assert set(result["before"]) == {"Eiffel Tower is located in the city of", "The Eiffel Tower is in"}
    assert set(result["after"]["The Eiffel Tower is in"]) == {"Rome", "Paris"}
    assert result["layer"] == 1 and result["patch"] == str(patch_file) and result["edit_seconds"] > 0

    code, out, _ = run("patch", "show", patch_file)
    assert code == 0 and "rome layer 1" in out and "Eiffel Tower" in out

    code, out, err = run("patch", "apply", "--model", tiny_dir, patch_file, "--out", tmp_path / "edited")
    assert code == 0, err
    code, out, err = run("patch", "revert", "--model", tmp_path / "edited", "--all", "--out", tmp_path / "plain")
    assert code == 0 and "0 patches remain" in out, err
    from safetensors.torch import load_file

    original, reverted = load_file(tiny_dir / "model.safetensors"), load_file(tmp_path / "plain" / "model.safetensors")
    assert all((original[k] == reverted[k]).all() for k in original)


def test_generate_side_by_side(run, tiny_dir):
    code, out, err = run("generate", "--model", tiny_dir, "--prompt", "The Eiffel Tower", "--n", "1",
                         "--max-new-tokens", "5", "--json")
    assert code == 0, err
    assert json.loads(out)["before"] == json.loads(out)["after"]  # no patches: identical samples


def test_edit_preset_under_set(run, tiny_dir, corpus, tmp_path, monkeypatch):
    """--preset fast sets the precision and ROME's contexts (and, on SmolLM2 only, the learning
    rate); --set of the same field still wins."""
    from factpatch.editing.patch import load_patch

    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: True)
    patch_file = tmp_path / "fast.safetensors"
    code, out, err = run("edit", *_edit_args(tiny_dir, corpus), "--preset", "fast", "--save", patch_file)
    assert code == 0, err
    # said beside the result: ROME gets MEMIT's 6 contexts too
    assert "preset fast: v_dtype bfloat16, prefixes ((5, 10),) (not the paper's settings)" in out
    hparams = load_patch(patch_file).meta["hparams"]
    assert (hparams["v_lr"], hparams["v_dtype"], hparams["prefixes"]) == (0.5, "bfloat16", [[5, 10]])
    code, _, err = run("edit", *_edit_args(tiny_dir, corpus), "--preset", "fast", "--set", "v_dtype=float32",
                       "--set", "v_lr=1.5", "--json", "--save", patch_file)
    assert code == 0, err
    hparams = load_patch(patch_file).meta["hparams"]
    assert (hparams["v_lr"], hparams["v_dtype"]) == (1.5, "float32")


def test_edit_preset_says_where_it_keeps_float32(run, tiny_dir, corpus, tmp_path, monkeypatch):
    """On a CPU that emulates bfloat16 the preset's note says v_dtype stayed float32, and the patch
    records float32; the contexts still come from the preset."""
    from factpatch.editing.patch import load_patch

    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: False)
    patch_file = tmp_path / "fast.safetensors"
    code, out, err = run("edit", *_edit_args(tiny_dir, corpus), "--preset", "fast", "--save", patch_file)
    assert code == 0, err
    assert ("preset fast: prefixes ((5, 10),) (not the paper's settings); "
            "v_dtype stays float32 (bfloat16 is emulated on this cpu)") in out
    hparams = load_patch(patch_file).meta["hparams"]
    assert (hparams["v_dtype"], hparams["prefixes"]) == ("float32", [[5, 10]])


def test_edit_many_says_what_a_preset_set(run, tiny_dir, corpus, tmp_path):
    """A batch edited under --preset says so; for a method the preset does not touch, that it set nothing."""
    requests = tmp_path / "facts.jsonl"
    requests.write_text('{"prompt": "{} is located in the city of", "subject": "Eiffel Tower", "target": "Rome"}\n')
    code, out, err = run("edit", "--model", tiny_dir, "--method", "ft", "--requests", requests, "--corpus", corpus,
                         "--layer", 1, "--set", "steps=1", "--preset", "fast", "--quiet")
    assert code == 0, err
    assert "preset fast sets nothing for ft" in out


@pytest.mark.parametrize(
    "over, message",
    [
        ({"--model": "no-such-model"}, "unknown model"),
        ({"--prompt": "The Eiffel Tower is in", "--subject": "Big Ben"}, "not in the prompt"),
        ({"--prompt": "The tower is located in"}, "not in the prompt"),
        ({"--target": ""}, "target is empty"),
        ({"--layer": 99}, "out of range"),
        ({"--target": "Paris"}, "equals the true object"),
        ({"--corpus": "/nonexistent/corpus.txt"}, "corpus file not found"),
        ({"--corpus-tokens": 0}, "--corpus-tokens must be at least 1"),
        ({"--preset": "quick"}, "unknown preset 'quick'"),
    ],
)
def test_edit_bad_input(run, tiny_dir, corpus, tmp_path, over, message):
    save = tmp_path / "never.safetensors"
    code, out, err = run("edit", *_edit_args(tiny_dir, corpus, **over), "--save", save)
    assert code != 0
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not save.exists()


def test_empty_corpus(run, tiny_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    code, _, err = run("stats", "--model", tiny_dir, "--layer", 1, "--corpus", empty)
    assert code != 0 and "empty" in err and err.count("\n") == 1


def test_bad_patch_files(run, tiny_dir, corpus, tmp_path, fresh_tiny):
    code, _, err = run("patch", "show", tmp_path / "missing.safetensors")
    assert code != 0 and "not found" in err
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    code, _, err = run("patch", "show", truncated)
    assert code != 0 and "truncated or corrupt" in err
    # a patch made on another model is refused, and nothing is written
    from factpatch.editing.patch import Patch, WeightDelta, make_meta, save_patch
    import torch

    other = fresh_tiny("llama", seed=5)
    foreign = save_patch(Patch([WeightDelta("model.layers.1.mlp.down_proj.weight", torch.zeros(32), torch.zeros(64))],
                               make_meta(other, "rome", [1], ["model.layers.1.mlp.down_proj"], [])), tmp_path / "foreign.safetensors")
    out_dir = tmp_path / "out"
    code, _, err = run("patch", "apply", "--model", tiny_dir, foreign, "--out", out_dir)
    assert code != 0 and "another model" in err and not out_dir.exists()
    code, _, err = run("generate", "--model", tiny_dir, "--patch", foreign, "--prompt", "x", "--max-new-tokens", 2)
    assert code != 0 and "another model" in err


def test_a_device_this_machine_lacks_is_one_line_and_nothing_is_written(run, tiny_dir, corpus, tmp_path):
    import torch

    patch_file = tmp_path / "edit.safetensors"
    cases = [("tpu", "unknown device 'tpu'"), ("cuda:x", "unknown device 'cuda:x'")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "sees no CUDA device"))
    for device, message in cases:
        code, out, err = run("edit", *_edit_args(tiny_dir, corpus), "--device", device, "--save", patch_file)
        assert code == 2 and message in err and err.count("\n") == 1 and not out, (device, err)
        assert not patch_file.exists()
    out_dir = tmp_path / "eval"
    code, _, err = run("eval", "--model", tiny_dir, "--device", "tpu", "--out", out_dir, "--quiet")
    assert code == 2 and "unknown device" in err and not out_dir.exists()
    # the CPU, named, is the default
    code, out, err = run("edit", *_edit_args(tiny_dir, corpus), "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["after"]


def _every_command(parser, path=()):
    """(argv prefix, parser) for the top level and every sub-command, however deep."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_command(sub, (*path, name))


def test_every_help_page_prints(capsys):
    """`--help` of the top level and of every sub-command prints its usage and exits 0 (a stray
    `%` in a help string makes argparse raise instead: "95% intervals" once broke `factpatch --help`),
    and no page shows a doubled `%%` (a description is not %-formatted, so there it prints as is)."""
    from factpatch.cli import build_parser, main

    commands = [path for path, _ in _every_command(build_parser())]
    assert len(commands) > 10 and ("eval",) in commands and ("study", "serve") in commands
    for path in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        assert exit_.value.code == 0, path
        page = capsys.readouterr().out
        assert page.startswith(f"usage: factpatch {' '.join(path)}".strip()), path
        assert "%%" not in page, path


def test_sigterm_unwinds_and_leaves_no_temporary_file(monkeypatch, tmp_path, capsys):
    """`kill` on a running command ends it as Ctrl-C would: the write under way is dropped with
    its temporary file (by default SIGTERM ends the process before any `finally`), exit 143, one
    line; and the default handler is back afterwards."""
    import argparse
    import os
    import signal
    import time

    import factpatch.cli as cli
    from factpatch.core.cache import atomic_path

    result = tmp_path / "result.json"

    def killed_while_writing(args):
        with atomic_path(result) as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler raises here, long before
        return 0

    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.set_defaults(func=killed_while_writing, quiet=True)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    # a Ray session earlier in this process (tests/test_distributed.py) leaves its own handler behind
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        started = time.monotonic()
        assert cli.main([]) == 143
    finally:
        after = signal.signal(signal.SIGTERM, previous)
    assert time.monotonic() - started < 20
    assert capsys.readouterr().err.strip() == "terminated"
    assert list(tmp_path.iterdir()) == []  # neither the result nor its temporary file
    assert after is signal.SIG_DFL


def test_python_dash_m_is_the_same_command_line():
    import subprocess
    import sys

    import factpatch

    done = subprocess.run([sys.executable, "-m", "factpatch", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"factpatch {factpatch.__version__}"
    done = subprocess.run([sys.executable, "-m", "factpatch", "no-such-command"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_models_lists_embedded(run):
    code, out, _ = run("models", "--json")
    assert code == 0 and {row["name"] for row in json.loads(out)} == {"smollm2-135m", "gemma3-270m"}


def test_models_table_says_how_each_layer_was_chosen(run):
    code, out, _ = run("models")
    assert code == 0
    for spec in EMBEDDED.values():
        row = next(line for line in out.splitlines() if line.startswith(spec.name))
        assert row.split()[4:6] == [str(spec.edit_layer), str(spec.attn_layer)]
        assert f"layers chosen by {spec.edit_layer_source}" in out
    assert "batch layers (MEMIT, AlphaEdit)" in out
    code, out, _ = run("models", "--json")
    ranges = {row["name"]: row["batch_layers"] for row in json.loads(out)}
    assert ranges == {"smollm2-135m": [1, 2, 3, 4, 5], "gemma3-270m": [2, 3, 4, 5, 6]}
    # the table shows the range an edit uses
    smollm2 = next(line for line in run("models")[1].splitlines() if line.startswith("smollm2-135m"))
    assert smollm2.split()[6] == "1-5"


def _requests_file(tmp_path, lines):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


FACTS = [
    '{"prompt": "{} is located in the city of", "subject": "Eiffel Tower", "target": "Rome", "target_true": "Paris"}',
    '{"prompt": "Lionel Messi plays the sport of", "subject": "Lionel Messi", "target": "golf", "target_true": "soccer"}',
]


@pytest.mark.parametrize("method", ["memit", "alphaedit", "rome"])
def test_edit_many_from_a_request_file(run, tiny_dir, corpus, tmp_path, method):
    out_file = tmp_path / "batch.safetensors"
    layers = ["--layers", "0-1"] if method != "rome" else ["--layer", "1"]
    code, out, err = run("edit", "--model", tiny_dir, "--method", method, "--requests", _requests_file(tmp_path, FACTS),
                         "--corpus", corpus, *layers, "--set", "v_steps=2", "--quiet", "--json", "--save", out_file)
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 2 and result["method"] == method and result["patch"] == str(out_file)
    assert [r["request"]["subject"] for r in result["requests"]] == ["Eiffel Tower", "Lionel Messi"]
    assert set(result["requests"][0]["after"]) == {"Rome", "Paris"}
    code, out, _ = run("patch", "show", out_file)
    assert code == 0 and "2 edits" in out


def test_a_second_batch_with_the_sequential_preset_holds_the_first(run, tiny_dir, corpus, tmp_path):
    """`edit --preset sequential --patch FIRST`: MEMIT holds the first batch's edits (its patch
    carries their z) and writes a patch only as wide as the new batch; over a stack made without
    the preset (no z) it is one line, exit 2, nothing written."""
    from factpatch.editing.patch import load_patch

    common = ["--model", tiny_dir, "--method", "memit", "--corpus", corpus, "--layers", "0-1", "--set", "v_steps=2",
              "--quiet"]
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    code, _, err = run("edit", *common, "--preset", "sequential", "--requests", _requests_file(tmp_path, FACTS[:1]),
                       "--save", first)
    assert code == 0, err
    code, out, err = run("edit", *common, "--preset", "sequential", "--requests", _requests_file(tmp_path, FACTS[1:]),
                         "--patch", first, "--save", second, "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 1
    patch = load_patch(second)
    assert patch.meta["hparams"]["replay_edits"] is True and patch.meta["hparams"]["replay_scale"] == 0
    assert all(d.left is not None and d.left.shape[1] == 1 for d in patch.deltas)  # the held edit writes nothing
    plain, never = tmp_path / "plain.safetensors", tmp_path / "never.safetensors"
    assert run("edit", *common, "--requests", _requests_file(tmp_path, FACTS[:1]), "--save", plain)[0] == 0
    code, _, err = run("edit", *common, "--preset", "sequential", "--requests", _requests_file(tmp_path, FACTS[1:]),
                       "--patch", plain, "--save", never)
    assert code == 2 and "carries no z" in err and err.count("\n") == 1, err
    assert not never.exists()


@pytest.mark.parametrize("lines, args, message", [
    (["{not json"], [], "facts.jsonl:1: not JSON"),
    (['{"prompt": "is in", "subject": "Eiffel Tower", "target": "Rome"}'], [], "facts.jsonl:1: subject 'Eiffel Tower' is not in the prompt"),
    ([FACTS[0], '{"prompt": "{} is in", "subject": "X", "target": ""}'], [], "facts.jsonl:2: 'target' is missing or empty"),
    (FACTS, ["--layers", "2-9"], "layer 4 out of range"),
    (FACTS, ["--layer", "1"], "--layer is for one-layer methods"),
    (FACTS, ["--set", "group_size=0"], "group_size must be at least 1"),
    (FACTS, ["--method", "nonsense"], "unknown method 'nonsense'"),
])
def test_edit_many_bad_input(run, tiny_dir, corpus, tmp_path, lines, args, message):
    out_file = tmp_path / "never.safetensors"
    args = ["--method", "memit", *args] if "--method" not in args else args
    code, out, err = run("edit", "--model", tiny_dir, "--requests", _requests_file(tmp_path, lines), "--corpus", corpus,
                         "--quiet", "--save", out_file, *args)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out_file.exists()


def test_edit_requests_and_single_flags_do_not_mix(run, tiny_dir, corpus, tmp_path):
    code, _, err = run("edit", *_edit_args(tiny_dir, corpus), "--requests", _requests_file(tmp_path, FACTS))
    assert code == 2 and "not both" in err
    code, _, err = run("edit", "--model", tiny_dir, "--requests", tmp_path / "missing.jsonl")
    assert code == 2 and "request file not found" in err


@pytest.mark.parametrize("args, message", [
    (["--n", "4", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--n", "4", "--batch-size", "2", "--checkpoint-every", "3"], "multiple of --batch-size"),
    (["--batch-size", "2"], "--sequential needs --n"),
    (["--n", "4", "--shard", "0/2"], "cannot be sharded"),
    (["--n", "4", "--known", "nope.json"], "known-facts file not found"),
])
def test_sequential_eval_bad_input(run, tiny_dir, tmp_path, args, message):
    code, _, err = run("eval", "--sequential", "--model", tiny_dir, "--methods", "memit", "--dataset", "builtin",
                       "--out", tmp_path / "seq", *args)
    assert code == 2 and message in err, err
    assert not (tmp_path / "seq").exists()
