"""Each method changes only what it should, by no more than it may, and leaves the model as it was."""

import pytest
import torch

from factpatch.editing.finetune import FineTuneParams
from factpatch.editing.registry import (
    attn_layer,
    edit_layer,
    make_editor,
    method_params,
    parse_methods,
    parse_overrides,
    per_model_key,
    preset_settings,
)
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.metrics import score_targets
from factpatch.core.models import weights_fingerprint
from factpatch.editing.patch import applied
from factpatch.editing.request import EditRequest
from factpatch.editing.stats import CorpusSpec

FAMILIES = ["llama", "gpt2", "gemma3"]
REQUEST = EditRequest("{} is located in the city of", "Eiffel Tower", "Rome", "Paris")


pytestmark = pytest.mark.usefixtures("one_thread")


def _changed(lm, before: dict[str, torch.Tensor]) -> dict[str, float]:
    """Parameter name -> max |change| for every parameter that differs from `before`."""
    out = {}
    for name, p in lm.model.named_parameters():
        diff = (p.detach() - before[name]).abs().max().item()
        if diff > 0:
            out[name] = diff
    return out


def _snapshot(lm) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in lm.model.named_parameters()}


def _run(lm, method: str, **overrides):
    editor = make_editor(lm, method, method_params(lm, method, overrides))
    fingerprint = weights_fingerprint(lm.model)
    patch = editor.patch([REQUEST])
    assert weights_fingerprint(lm.model) == fingerprint, "computing a patch must not change the model"
    before = _snapshot(lm)
    with applied(lm, [patch]):
        changed = _changed(lm, before)
        p_new = score_targets(lm, [REQUEST.text], [REQUEST.target_new])[0].prob
    assert weights_fingerprint(lm.model) == fingerprint, "reverting must restore the original bits"
    assert not any(p.requires_grad for p in lm.model.parameters()), "gradient flags must be restored"
    return patch, changed, p_new


@pytest.mark.parametrize("family", FAMILIES)
def test_ft_changes_only_the_mlp_output_of_its_layer(tiny_models, family):
    lm = tiny_models[family]
    p0 = score_targets(lm, [REQUEST.text], [REQUEST.target_new])[0].prob
    patch, changed, p_new = _run(lm, "ft", lr=1e-2)
    assert set(changed) == {f"{lm.adapter.mlp_out_path(edit_layer(lm))}.weight"}
    assert patch.meta["method"] == "ft" and patch.meta["layer"] == edit_layer(lm)
    assert all(d.dense is not None for d in patch.deltas)
    assert p_new > p0  # it learned something
    assert patch.meta["loss_last"] < patch.meta["loss_first"]


@pytest.mark.parametrize("family", FAMILIES)
def test_ft_l_stays_within_its_linf_ball(tiny_models, family):
    lm = tiny_models[family]
    eps = 2e-3
    patch, changed, _ = _run(lm, "ft+l", lr=1e-2, norm_constraint=eps)
    assert set(changed) == {f"{lm.adapter.mlp_out_path(edit_layer(lm))}.weight"}
    assert max(changed.values()) <= eps * (1 + 1e-4)
    assert max(changed.values()) > eps / 2  # the constraint is active, not vacuous
    unconstrained = _run(lm, "ft", lr=1e-2)[1]
    assert max(unconstrained.values()) > eps


@pytest.mark.parametrize("family", FAMILIES)
def test_attn_edit_changes_only_qkv_of_its_layer_within_eps(tiny_models, family):
    lm = tiny_models[family]
    patch, changed, _ = _run(lm, "attn", lr=1e-2)
    expected = {f"{path}.weight" for path in lm.adapter.qkv_paths(attn_layer(lm))}
    assert set(changed) == expected
    assert max(changed.values()) <= 1e-3 * (1 + 1e-4)  # ±ε = 0.001 around the originals
    if family == "llama":  # grouped-query attention: K and V have fewer rows than Q
        shapes = {name.rsplit(".", 2)[-2]: d.dense.shape for name, d in zip(expected, patch.deltas)}
        shapes = {d.param.rsplit(".", 2)[-2]: tuple(d.dense.shape) for d in patch.deltas}
        assert shapes["q_proj"][0] == 2 * shapes["k_proj"][0] == 2 * shapes["v_proj"][0]
    assert patch.meta["method"] == "attn" and patch.meta["layer"] == attn_layer(lm)


def test_none_is_an_empty_patch(tiny_models):
    lm = tiny_models["llama"]
    patch, changed, _ = _run(lm, "none")
    assert patch.deltas == [] and changed == {}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_rome_editor_is_a_rank_one_patch_at_its_layer(tiny_models, tmp_path, family):
    lm = tiny_models[family]
    params = method_params(lm, "rome", {"v_steps": "4", "prefixes": "[[2, 3]]"})
    editor = make_editor(lm, "rome", params, cache_dir=tmp_path, progress=False, corpus=CorpusSpec(n_tokens=256))
    fingerprint = weights_fingerprint(lm.model)
    patch = editor.patch([REQUEST])
    assert weights_fingerprint(lm.model) == fingerprint
    (delta,) = patch.deltas
    assert delta.left is not None and delta.dense is None
    assert delta.param == f"{lm.adapter.mlp_out_path(edit_layer(lm))}.weight"
    before = _snapshot(lm)
    with applied(lm, [patch]):
        assert set(_changed(lm, before)) == {delta.param}
    assert weights_fingerprint(lm.model) == fingerprint


def test_finetune_restores_weights_even_when_it_fails(tiny_models, monkeypatch):
    lm = tiny_models["llama"]
    fingerprint = weights_fingerprint(lm.model)

    def boom(*args, **kwargs):
        raise RuntimeError("optimizer failed")

    editor = make_editor(lm, "ft", method_params(lm, "ft", {"lr": "0.1"}))
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def step_then_fail(self, *args, **kwargs):
        calls["n"] += 1
        real_step(self, *args, **kwargs)
        if calls["n"] == 2:
            boom()

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_fail)
    with pytest.raises(RuntimeError, match="optimizer failed"):
        editor.patch([REQUEST])
    assert weights_fingerprint(lm.model) == fingerprint
    assert not any(p.requires_grad for p in lm.model.parameters())


def test_defaults_follow_the_paper(tiny_models):
    lm = tiny_models["llama"]
    ft, ftl, attn = (method_params(lm, m) for m in ("ft", "ft+l", "attn"))
    assert (ft.steps, ft.lr, ft.norm_constraint, ft.layer) == (25, 5e-4, None, edit_layer(lm))
    assert (ftl.steps, ftl.lr, ftl.norm_constraint) == (25, 5e-4, 5e-4)
    assert (attn.steps, attn.lr, attn.norm_constraint, attn.layer) == (25, 1e-3, 1e-3, attn_layer(lm))
    assert method_params(lm, "rome").layer == edit_layer(lm)


def test_method_names_and_settings_are_checked(tiny_models):
    lm = tiny_models["llama"]
    assert parse_methods("rome, FT+L,none") == ["rome", "ft+l", "none"]
    with pytest.raises(FactpatchError, match="unknown method 'mend'"):
        parse_methods("rome,mend")
    with pytest.raises(FactpatchError, match="listed twice"):
        parse_methods("rome,rome")
    with pytest.raises(FactpatchError, match="no methods"):
        parse_methods(" , ")
    assert parse_overrides(["ft.lr=1e-3", "ft.layer=2", "rome.v_steps=5"]) == {
        "ft": {"lr": "1e-3", "layer": "2"}, "rome": {"v_steps": "5"}
    }
    for bad in ("ft.lr", "lr=1", "mend.lr=1"):
        with pytest.raises(FactpatchError, match="bad --set"):
            parse_overrides([bad])
    # values the settings themselves refuse are refused here too, before any model is loaded
    with pytest.raises(FactpatchError, match="bad --set for alphaedit: L2 must be positive"):
        parse_overrides(["alphaedit.layers=1-5", "alphaedit.L2=-1"])
    with pytest.raises(FactpatchError, match="bad --set for memit: layers must be distinct and ascending"):
        parse_overrides(["memit.layers=[3, 1]"])
    params = method_params(lm, "ft+l", {"lr": "1e-3", "norm_constraint": "none", "layer": "2"})
    assert params == FineTuneParams(layer=2, lr=1e-3, norm_constraint=None)
    with pytest.raises(FactpatchError, match="unknown setting 'speed'"):
        method_params(lm, "ft", {"speed": "3"})
    with pytest.raises(FactpatchError, match="bad value 'fast'"):
        method_params(lm, "ft", {"lr": "fast"})
    with pytest.raises(FactpatchError, match="layer 9 out of range"):
        method_params(lm, "attn", {"layer": "9"})
    with pytest.raises(FactpatchError, match="steps must be at least 1"):
        method_params(lm, "ft", {"steps": "0"})


def test_a_preset_sits_under_the_users_settings(tiny_models, monkeypatch):
    """`--preset fast` gives every model a bfloat16 δ optimisation (and ROME 6 contexts) and
    SmolLM2 v_lr 2.0 as well (the model it was measured on); an override of the same field wins; other methods and the
    defaults are untouched; an unknown name is a clear error."""
    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: True)
    lm = tiny_models["llama"]
    fast = preset_settings("fast")
    six = "[[5, 10]]"  # ROME with MEMIT's contexts: the bare prompt and 5 prefixes of 10 tokens
    assert fast == {"rome": {"v_dtype": "bfloat16", "prefixes": six}, "memit": {"v_dtype": "bfloat16"},
                    "alphaedit": {"v_dtype": "bfloat16"}}
    assert preset_settings("fast", "gemma3-270m") == fast and preset_settings(None) == {}
    smollm2 = preset_settings("fast", "smollm2-135m")
    assert smollm2 == {m: {**fast[m], "v_lr": "2.0"} for m in ("rome", "memit", "alphaedit")}
    for method in ("rome", "memit", "alphaedit"):
        plain, quick = method_params(lm, method), method_params(lm, method, preset="fast")
        assert (plain.v_lr, plain.v_dtype) == (0.5, "float32")
        assert (quick.v_lr, quick.v_dtype) == (0.5, "bfloat16")  # a model the preset has no measurement of
        assert method_params(lm, method, {"v_dtype": "float32"}, preset="fast").v_dtype == "float32"
    assert method_params(lm, "rome").prefixes == ((10, 5), (10, 10))
    assert method_params(lm, "rome", preset="fast").prefixes == ((5, 10),)
    assert method_params(lm, "ft", preset="fast") == method_params(lm, "ft")
    preset_settings("fast", "smollm2-135m")["rome"]["v_lr"] = "9"  # a caller's copy: the table stays
    assert preset_settings("fast", "smollm2-135m")["rome"]["v_lr"] == "2.0"
    with pytest.raises(FactpatchError, match="unknown preset 'quick': choose from fast, sequential"):
        preset_settings("quick")
    with pytest.raises(FactpatchError, match="unknown preset 'slow'"):
        preset_settings("fast,slow")


def test_the_sequential_preset_holds_earlier_edits_and_joins_fast(tiny_models, monkeypatch):
    """`--preset sequential` makes MEMIT hold a stack's earlier edits at fresh keys (replay_edits,
    γ = 0) and leaves every other method alone; "fast,sequential" is both, the later over the earlier."""
    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: True)
    lm = tiny_models["llama"]
    held = method_params(lm, "memit", preset="sequential")
    assert (held.replay_edits, held.replay_scale, held.preserve_edits) == (True, 0.0, False)
    assert method_params(lm, "memit").replay_edits is False
    for method in ("rome", "alphaedit", "ft"):
        assert method_params(lm, method, preset="sequential") == method_params(lm, method)
    both = method_params(lm, "memit", preset="fast,sequential")
    assert (both.v_dtype, both.replay_edits, both.replay_scale) == ("bfloat16", True, 0.0)
    assert preset_settings("fast,sequential", "smollm2-135m")["memit"] == {
        "v_dtype": "bfloat16", "v_lr": "2.0", "replay_edits": "true", "replay_scale": "0"}
    assert method_params(lm, "memit", {"replay_scale": "0.5"}, preset="sequential").replay_scale == 0.5


def test_the_preset_keeps_float32_where_bfloat16_is_emulated(tiny_models, monkeypatch, caplog):
    """On a device without native bfloat16 (an AVX2-only CPU, where it was 11× slower) the preset
    leaves v_dtype at float32, says so in the log, and keeps the rest; --set can still choose it."""
    import logging

    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: False)
    lm = tiny_models["llama"]
    assert preset_settings("fast", bfloat16=False) == {"rome": {"prefixes": "[[5, 10]]"}, "memit": {}, "alphaedit": {}}
    assert preset_settings("fast", "smollm2-135m", bfloat16=False)["memit"] == {"v_lr": "2.0"}
    with caplog.at_level(logging.INFO, logger="factpatch"):
        rome = method_params(lm, "rome", preset="fast")
    assert (rome.v_dtype, rome.prefixes) == ("float32", ((5, 10),))
    assert "preset fast keeps v_dtype of rome in float32" in caplog.text
    assert method_params(lm, "memit", {"v_dtype": "bfloat16"}, preset="fast").v_dtype == "bfloat16"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="factpatch"):
        method_params(lm, "rome")
    assert "float32" not in caplog.text  # no preset, nothing to say


def test_native_bfloat16_reads_the_devices_capability(monkeypatch):
    """CPU: avx512_bf16 or AMX tiles; a PyTorch without the probes counts as no; CUDA asks CUDA."""
    import torch

    from factpatch.core.models import native_bfloat16

    cpu = torch.device("cpu")
    for bf16, amx, expected in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert native_bfloat16(cpu) is expected
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert native_bfloat16(cpu) is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert native_bfloat16(torch.device("cuda")) is True
    assert native_bfloat16(torch.device("meta")) is False


def test_a_patched_copy_of_an_embedded_model_gets_its_bases_settings(tiny_models, monkeypatch):
    """Per-model defaults and presets follow `embedded` (a model directory from `patch apply`
    names its base there), as the default edit layers do."""
    import dataclasses

    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: True)

    copy = dataclasses.replace(tiny_models["llama"], name="runs/edited", embedded="smollm2-135m")
    assert per_model_key(copy) == "smollm2-135m" and per_model_key(tiny_models["llama"]) == tiny_models["llama"].name
    # (the tiny model has 4 layers, so the base's edit layers and range are overridden here)
    memit = method_params(copy, "memit", {"layers": "0-1"}, preset="fast")
    assert (memit.v_lr, memit.v_dtype) == (2.0, "bfloat16")  # SmolLM2's part of the preset
    plain = method_params(tiny_models["llama"], "memit", {"layers": "0-1"}, preset="fast")
    assert (plain.v_lr, plain.v_dtype) == (0.5, "bfloat16")


def test_gemma3s_batch_editors_converge_z_and_map_through_a_stiffer_norm_by_default(tiny_models, monkeypatch):
    """Gemma 3's per-model AlphaEdit and MEMIT defaults (registry.MODEL_DEFAULTS: v_lr 1.0, post-norm
    damping 1e-2, measured over 2,000 sequential edits) reach Gemma 3 only: other models keep the
    reference's 0.5 and 1e-3; `--set` still wins, and a preset (fast, sequential) sits under them."""
    import dataclasses

    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: True)
    lm = tiny_models["llama"]
    gemma = dataclasses.replace(lm, embedded="gemma3-270m")
    layers = {"layers": "0-1"}  # the tiny model has 4 layers; Gemma 3's range is 2-6
    for method in ("alphaedit", "memit"):
        params = method_params(gemma, method, layers)
        assert (params.v_lr, params.post_norm_damping) == (1.0, 1e-2), method
        params = method_params(lm, method, layers)
        assert (params.v_lr, params.post_norm_damping) == (0.5, 1e-3), method
        earlier = method_params(gemma, method, {**layers, "v_lr": "0.5", "post_norm_damping": "0.001"})
        assert (earlier.v_lr, earlier.post_norm_damping) == (0.5, 1e-3), method
        quick = method_params(gemma, method, layers, preset="fast")
        assert (quick.v_lr, quick.v_dtype, quick.post_norm_damping) == (1.0, "bfloat16", 1e-2), method
    held = method_params(gemma, "memit", layers, preset="sequential")
    assert (held.v_lr, held.post_norm_damping, held.replay_edits, held.replay_scale) == (1.0, 1e-2, True, 0.0)


def test_default_layers_come_from_the_embedded_models_trace_or_the_papers_depths(tiny_models):
    """An embedded model (or a patched copy: `embedded` names its base) edits its traced layers;
    any other model the paper's relative depths (17 and 33 of 48 layers)."""
    import dataclasses

    from factpatch.core.models import EMBEDDED

    lm = tiny_models["llama"]
    assert (edit_layer(lm), attn_layer(lm)) == (round(4 * 17 / 48), round(4 * 33 / 48)) == (1, 3)
    gemma = EMBEDDED["gemma3-270m"]
    copy = dataclasses.replace(lm, embedded=gemma.name)
    assert (edit_layer(copy), attn_layer(copy)) == (gemma.edit_layer, gemma.attn_layer) != (1, 3)
    with pytest.raises(FactpatchError, match=f"layer {gemma.attn_layer} out of range"):
        method_params(copy, "attn")  # the tiny model has 4 layers: the traced layer is refused, not clamped


def test_the_radius_table_in_the_docstring_is_the_code():
    """factpatch.editing.finetune's table of radii ε (= lr) says what method_params gives each model."""
    import types

    from factpatch.editing import finetune
    from factpatch.editing.registry import METHODS, MODEL_DEFAULTS

    lines = [line.split() for line in finetune.__doc__.splitlines()]
    start = next(i for i, words in enumerate(lines) if words[:2] == ["method", "paper"])
    header, lines = lines[start], lines[start + 1 :]
    assert set(MODEL_DEFAULTS) <= set(header[2:])  # every model with its own defaults has a column
    anonymous = types.SimpleNamespace(name="any", embedded=None, n_layers=48)
    for method in ("ft+l", "attn"):
        row = dict(zip(header, next(words for words in lines if words[:1] == [method])))
        paper = METHODS[method].defaults(anonymous)
        assert float(row["paper"]) == paper["norm_constraint"] == paper["lr"]
        for model in header[2:]:
            values = {**paper, **MODEL_DEFAULTS.get(model, {}).get(method, {})}
            assert float(row[model]) == values["norm_constraint"] == values["lr"], (method, model)
    assert "0.001" not in finetune.__doc__ and "±0.001" not in METHODS["attn"].description
