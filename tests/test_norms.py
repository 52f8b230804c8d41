"""`factpatch patch norms` (editing.norms): how far a stack moves each matrix, and whether its deltas
add up, stay orthogonal or cancel."""

import json
import math

import pytest
import torch

from factpatch.core.errors import FactpatchError
from factpatch.editing.norms import stack_norms
from factpatch.editing.patch import Patch, WeightDelta, make_meta, save_patch

W = "layers.0.mlp.down.weight"


def _rank_one(row: int, scale: float = 1.0, d_out: int = 4, d_in: int = 3) -> Patch:
    left = torch.zeros(d_out)
    left[row] = scale
    return Patch([WeightDelta(W, left=left, right=torch.ones(d_in))], {"fingerprint": "f", "row": row, "scale": scale})


def test_orthogonal_deltas_add_as_their_orthogonal_sum_and_opposite_ones_cancel():
    w0 = {W: torch.full((4, 3), 2.0)}  # ‖W₀‖ = 2·√12
    norm = 2 * math.sqrt(12)
    one = math.sqrt(3) / norm  # a rank-one delta of one row of ones
    orthogonal = stack_norms(w0, [_rank_one(0), _rank_one(1)])  # different rows: ⟨Δ₁, Δ₂⟩ = 0
    assert orthogonal.per_delta[W] == pytest.approx([one, one])
    first, second = orthogonal.after_patch
    assert first.weight_change[W] == pytest.approx(one) and first.deltas_so_far[W] == 1
    assert second.weight_change[W] == pytest.approx(math.sqrt(2) * one) == second.orthogonal_sum[W]
    piled = stack_norms(w0, [_rank_one(0), _rank_one(0)]).after_patch[-1]  # the same direction twice
    assert piled.weight_change[W] == pytest.approx(2 * one) and piled.orthogonal_sum[W] == pytest.approx(math.sqrt(2) * one)
    cancelled = stack_norms(w0, [_rank_one(0), _rank_one(0, -1.0)]).after_patch[-1]
    assert cancelled.weight_change[W] == pytest.approx(0.0) and cancelled.orthogonal_sum[W] == pytest.approx(math.sqrt(2) * one)
    record = stack_norms(w0, [_rank_one(0), _rank_one(1), _rank_one(2, 3.0)]).to_dict()
    assert record["per_delta"][W]["median"] == pytest.approx(one, abs=1e-6)
    assert record["per_delta"][W]["max"] == pytest.approx(3 * one, abs=1e-6)
    assert record["after_patch"][-1]["matrices"][W]["deltas_so_far"] == 3


def test_a_delta_the_matrices_do_not_fit_is_refused():
    with pytest.raises(FactpatchError, match="does not have"):
        stack_norms({"other.weight": torch.ones(4, 3)}, [_rank_one(0)])
    with pytest.raises(FactpatchError, match="has shape"):
        stack_norms({W: torch.ones(5, 3)}, [_rank_one(0)])


def test_command_line_measures_a_stack_and_refuses_another_models_patch(run, tiny_dir, tmp_path):
    from factpatch.core.models import load_model

    lm = load_model(str(tiny_dir))
    param = f"{lm.adapter.mlp_out_path(1)}.weight"
    weight = lm.model.get_parameter(param).detach()
    paths = []
    for seed, delta in enumerate([0.1 * weight, 0.1 * weight]):  # twice the same direction: they pile up
        patch = Patch([WeightDelta(param, dense=delta.clone())], make_meta(lm, "ft", [1], [param], [], seed=seed))
        paths.append(save_patch(patch, tmp_path / f"p{seed}.safetensors"))
    code, out, err = run("patch", "norms", "--model", tiny_dir, *paths, "--json", tmp_path / "n.json")
    assert code == 0, err
    assert f"{param}: 2 deltas, each |D|/|W0| median 0.1000" in out
    record = json.loads((tmp_path / "n.json").read_text())
    after = record["after_patch"][-1]["matrices"][param]
    assert after["weight_change"] == pytest.approx(0.2, abs=1e-5) and after["orthogonal_sum"] == pytest.approx(0.1 * math.sqrt(2), abs=1e-5)
    other = Patch([WeightDelta(param, dense=weight.clone())], {**make_meta(lm, "ft", [1], [param], []), "fingerprint": "elsewhere"})
    save_patch(other, tmp_path / "other.safetensors")
    code, out, err = run("patch", "norms", "--model", tiny_dir, tmp_path / "other.safetensors")
    assert code == 2 and "made on another model" in err and len(err.strip().splitlines()) == 1
    code, out, err = run("patch", "norms", "--model", tiny_dir, tmp_path / "missing.safetensors")
    assert code == 2 and "patch file not found" in err
