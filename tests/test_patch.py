"""Patch files: save/load, apply/stack/revert bit for bit, fingerprint checks, patched directories."""

import pytest
import torch

from factpatch.core.errors import FactpatchError
from factpatch.core.models import load_model
from factpatch.editing.patch import (
    Patch, PatchStack, WeightDelta, applied, export_model, load_patch, make_meta, restore_stack, save_patch,
)


def _snapshot(lm):
    return {name: p.detach().clone() for name, p in lm.model.named_parameters()}


def _assert_bits_equal(lm, snapshot):
    for name, param in lm.model.named_parameters():
        assert torch.equal(param, snapshot[name].to(param.device)), name  # exact, not approximate


def _rank_one(lm, layer, seed):
    g = torch.Generator().manual_seed(seed)
    weight = lm.module(lm.adapter.mlp_out_path(layer)).weight
    d_out, d_in = (weight.shape[1], weight.shape[0]) if lm.adapter.mlp_out_transposed else weight.shape
    delta = WeightDelta(
        param=f"{lm.adapter.mlp_out_path(layer)}.weight",
        left=torch.randn(d_out, generator=g) * 0.1,
        right=torch.randn(d_in, generator=g) * 0.1,
        transposed=lm.adapter.mlp_out_transposed,
    )
    return Patch([delta], make_meta(lm, "rome", [layer], [lm.adapter.mlp_out_path(layer)], [], seed=seed))


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_save_load_round_trip(fresh_tiny, tmp_path, family):
    lm = fresh_tiny(family)
    patch = _rank_one(lm, 1, 0)
    path = save_patch(patch, tmp_path / "p.safetensors")
    loaded = load_patch(path)
    assert loaded.id == patch.id and loaded.meta == patch.meta
    assert torch.equal(loaded.deltas[0].tensor(), patch.deltas[0].tensor())
    assert loaded.deltas[0].tensor().shape == lm.module(lm.adapter.mlp_out_path(1)).weight.shape
    assert path.stat().st_size < 10_000  # factors, not the matrix


def test_revert_all_restores_original_bits(fresh_tiny):
    lm = fresh_tiny("llama")
    original = _snapshot(lm)
    stack = PatchStack(lm)
    for seed, layer in [(0, 1), (1, 1), (2, 3)]:
        stack.apply(_rank_one(lm, layer, seed))
    assert not torch.equal(lm.module(lm.adapter.mlp_out_path(1)).weight, original["model.layers.1.mlp.down_proj.weight"])
    stack.revert()
    _assert_bits_equal(lm, original)


def test_revert_one_equals_applying_the_others(fresh_tiny):
    lm, reference = fresh_tiny("gpt2"), fresh_tiny("gpt2")
    patches = [_rank_one(lm, 1, 0), _rank_one(lm, 1, 1), _rank_one(lm, 2, 2)]
    stack = PatchStack(lm)
    for p in patches:
        stack.apply(p)
    stack.revert(patches[1].id)
    ref_stack = PatchStack(reference)
    for p in (patches[0], patches[2]):
        ref_stack.apply(p)
    _assert_bits_equal(lm, _snapshot(reference))
    assert [p.id for p in stack.applied] == [patches[0].id, patches[2].id]


@pytest.mark.parametrize("family", ["llama", "gpt2"])  # gpt2: Conv1D, the delta stored transposed
def test_relative_change_is_the_stack_s_distance_from_the_original_weights(fresh_tiny, family):
    lm = fresh_tiny(family)
    stack = PatchStack(lm)
    assert stack.relative_change() == {}  # nothing applied, nothing moved
    first, second, elsewhere = _rank_one(lm, 1, 0), _rank_one(lm, 1, 1), _rank_one(lm, 2, 2)
    name = first.deltas[0].param
    original = lm.model.get_parameter(name).detach().clone().double()
    for patch in (first, second, elsewhere):
        stack.apply(patch)
    together = first.deltas[0].tensor().double() + second.deltas[0].tensor().double()
    change = stack.relative_change()
    assert set(change) == {name, elsewhere.deltas[0].param}
    # the two patches on one matrix count together, not each on its own
    assert change[name] == pytest.approx(float(together.norm() / original.norm()), rel=1e-5)
    assert change[name] != pytest.approx(float(first.deltas[0].tensor().double().norm() / original.norm()), rel=1e-3)
    stack.revert(second.id)
    assert stack.relative_change()[name] == pytest.approx(
        float(first.deltas[0].tensor().double().norm() / original.norm()), rel=1e-5)
    stack.revert()
    assert stack.relative_change() == {}


def test_context_manager_reverts_even_on_error(fresh_tiny):
    lm = fresh_tiny("gemma3")
    original = _snapshot(lm)
    with pytest.raises(RuntimeError):
        with applied(lm, [_rank_one(lm, 1, 0)]):
            raise RuntimeError("boom")
    _assert_bits_equal(lm, original)


def test_wrong_model_is_refused_unless_forced(fresh_tiny, caplog):
    lm, other = fresh_tiny("llama", seed=0), fresh_tiny("llama", seed=1)
    patch = _rank_one(other, 1, 0)
    stack = PatchStack(lm)
    with pytest.raises(FactpatchError, match="made on another model.*--force"):
        stack.apply(patch)
    assert not stack.applied and not stack.originals
    stack.apply(patch, force=True)
    assert "applying anyway" in caplog.text


def test_missing_and_truncated_files(tmp_path, fresh_tiny):
    with pytest.raises(FactpatchError, match="not found"):
        load_patch(tmp_path / "none.safetensors")
    lm = fresh_tiny("llama")
    path = save_patch(_rank_one(lm, 1, 0), tmp_path / "p.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FactpatchError, match="truncated or corrupt"):
        load_patch(path)


def test_exported_directory_reverts_exactly(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    original = _snapshot(lm)
    stack = PatchStack(lm)
    patches = [_rank_one(lm, 1, 0), _rank_one(lm, 2, 1)]
    for p in patches:
        stack.apply(p)
    export_model(lm, stack, tmp_path / "edited")
    with pytest.raises(FactpatchError, match="not empty"):
        export_model(lm, stack, tmp_path / "edited")

    edited = load_model(str(tmp_path / "edited"))
    assert edited.fingerprint == lm.fingerprint  # the base model's, not the patched weights'
    restored = restore_stack(edited)
    assert [p.id for p in restored.applied] == [p.id for p in patches]
    restored.revert()
    _assert_bits_equal(edited, original)


# ----------------------------------------------------------------------------- ids


def test_id_is_the_content_not_the_notes(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    patch = _rank_one(lm, 1, 0)
    first = patch.id
    assert len(first) == 12
    # notes about the making, added after the fact, leave it alone
    patch.meta["probabilities"] = {"before": {"x": 0.1}, "after": {"x": 0.9}}
    patch.meta["batch"], patch.meta["batch_seconds"], patch.meta["created"] = 3, 1.5, "2030-01-01T00:00:00+00:00"
    patch.meta["hparams"] = {"v_steps": 99}
    assert patch.id == first
    # applied, reverted, saved and loaded: the same id
    stack = PatchStack(lm)
    stack.apply(patch)
    assert stack.applied[0].id == first
    stack.revert(first)
    assert load_patch(save_patch(patch, tmp_path / "p.safetensors")).id == first


def test_id_changes_with_what_the_patch_does(fresh_tiny):
    lm, other = fresh_tiny("llama", seed=0), fresh_tiny("llama", seed=1)
    base = _rank_one(lm, 1, 0)
    ids = {base.id}
    for changed in (
        _rank_one(lm, 1, 1),  # other numbers
        _rank_one(lm, 2, 0),  # another parameter
        _rank_one(other, 1, 0),  # another model's fingerprint
    ):
        ids.add(changed.id)
    request = {"prompt": "{} is in", "subject": "Paris", "target_new": "Rome", "target_true": None}
    asked = Patch(base.deltas, {**base.meta, "requests": [request]})
    ids.add(asked.id)
    d = base.deltas[0]  # the same bytes in another layout
    reshaped = Patch([WeightDelta(d.param, dense=torch.outer(d.left, d.right).flatten())], dict(base.meta))
    dense = Patch([WeightDelta(d.param, dense=torch.outer(d.left, d.right))], dict(base.meta))
    ids |= {reshaped.id, dense.id}
    attached = Patch(base.deltas, dict(base.meta), {"keys": torch.ones(3)})
    ids.add(attached.id)
    assert len(ids) == 8


def test_the_id_of_a_real_edit_survives_its_report(fresh_tiny, tmp_path):
    """api.edit applies the patch and then records probabilities in its metadata: the id it
    prints must be the id the patch had when it was made, and the id its file loads with."""
    from tiny import CORPUS

    from factpatch.api import edit
    from factpatch.editing.request import EditRequest
    from factpatch.editing.rome import ROMEParams
    from factpatch.editing.stats import CorpusSpec

    lm = fresh_tiny("gpt2")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(CORPUS * 3))
    hp = ROMEParams(layer=1, prefixes=((3, 4),), v_steps=3)
    result = edit(lm, EditRequest("{} is located in the city of", "Eiffel Tower", "Rome", "Paris"),
                  hparams=hp, corpus=CorpusSpec(corpus, 2000), cache_dir=tmp_path, progress=False)
    patch = result.patch
    assert "probabilities" in patch.meta
    as_made = Patch(patch.deltas, {k: v for k, v in patch.meta.items() if k != "probabilities"}, patch.attachments)
    assert patch.id == as_made.id
    assert load_patch(save_patch(patch, tmp_path / "p.safetensors")).id == patch.id


def test_directories_exported_with_the_old_ids_still_restore(fresh_tiny, tmp_path):
    import json

    from factpatch.core.models import FINGERPRINT_FILE

    lm = fresh_tiny("llama")
    original = _snapshot(lm)
    stack = PatchStack(lm)
    patches = [_rank_one(lm, 1, 0), _rank_one(lm, 2, 1)]
    for p in patches:
        stack.apply(p)
    export_model(lm, stack, tmp_path / "edited")
    record_file = tmp_path / "edited" / FINGERPRINT_FILE
    record = json.loads(record_file.read_text())
    record["patches"] = [p.legacy_id for p in patches]  # as an older factpatch wrote it
    record_file.write_text(json.dumps(record))
    restored = restore_stack(load_model(str(tmp_path / "edited")))
    assert [p.id for p in restored.applied] == [p.id for p in patches]
    record["patches"] = ["0" * 12, "1" * 12]
    record_file.write_text(json.dumps(record))
    with pytest.raises(FactpatchError, match="do not match"):
        restore_stack(load_model(str(tmp_path / "edited")))
    restored.revert()
    _assert_bits_equal(restored.lm, original)
