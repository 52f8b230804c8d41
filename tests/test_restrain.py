"""PRUNE (editing.restrain): F on singular values, the correction of a stack, and the correction as a
patch that only applies on the stack it was made for."""

import math

import pytest
import torch

from factpatch.core.errors import FactpatchError
from factpatch.editing.patch import Patch, PatchStack, WeightDelta, load_patch, make_meta, save_patch
from factpatch.editing.restrain import PruneParams, restrain, restrained_singular_values, restraint_patch


def test_F_leaves_small_values_and_squashes_large_ones_logarithmically():
    sigma_hat, base = 10.0, 1.2
    sigma = torch.tensor([40.0, 20.0, 10.0, 9.99, 1.0], dtype=torch.float64)
    out = restrained_singular_values(sigma, sigma_hat, base)
    assert out[2] == pytest.approx(10.0) and out[3] == 9.99 and out[4] == 1.0  # continuous at σ̂, the rest kept
    assert out[0] == pytest.approx(math.log(4.0, base) + 10.0)  # log_α(σ) − log_α(σ̂) + σ̂
    assert out[1] == pytest.approx(math.log(2.0, base) + 10.0)
    assert torch.all(out <= sigma) and out[0] > out[1] > out[2]  # shrinks, keeps the order
    # σ̂ below 1/ln α: the reference's F would give log_1.2(20) + 0.5 = 16.9 for σ = 10; never more than σ
    small = restrained_singular_values(torch.tensor([10.0, 0.6], dtype=torch.float64), 0.5, base)
    assert small[0] == 10.0 and small[1] == pytest.approx(min(0.6, math.log(1.2, base) + 0.5))


def _edited(seed: int, big: float):
    """W₀ (30×50) and W = W₀ + ΔW with two singular values of ΔW above σ_max(W₀) and the rest below."""
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(30, 50, generator=g, dtype=torch.float64)
    U, _ = torch.linalg.qr(torch.randn(30, 5, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(50, 5, generator=g, dtype=torch.float64))
    sigma_hat = float(torch.linalg.matrix_norm(W0, ord=2))
    sigma = torch.tensor([big * sigma_hat, 2 * sigma_hat, 0.5 * sigma_hat, 0.2 * sigma_hat, 0.1 * sigma_hat],
                         dtype=torch.float64)
    return W0, W0 + U @ torch.diag(sigma) @ V.T, sigma_hat


def test_restrain_changes_only_the_directions_above_the_original_norm():
    W0, W, sigma_hat = _edited(0, 6.0)
    found = restrain(W0, W, 1.2)
    assert len(found.sigma) == 2 and found.sigma_hat == pytest.approx(sigma_hat)
    restrained = W + found.left @ found.right.T
    s_before = torch.linalg.svdvals(W - W0)
    s_after = torch.linalg.svdvals(restrained - W0)
    expected = restrained_singular_values(s_before[:5], sigma_hat, 1.2)
    assert torch.allclose(s_after[:5].sort(descending=True).values, expected.sort(descending=True).values, atol=1e-8)
    assert torch.allclose(s_after[2:5], s_before[2:5], atol=1e-8)  # below σ̂: untouched
    # the condition number PRUNE bounds goes down
    assert torch.linalg.cond(restrained) < torch.linalg.cond(W)
    # nothing above σ̂, nothing to correct
    nothing = restrain(W0, W0 + 0.01 * torch.ones_like(W0) / 40, 1.2)
    assert nothing.sigma == [] and nothing.left.shape == (30, 0)


def _delta_patch(lm, param, tensor, seed):
    return Patch([WeightDelta(param, dense=tensor)], make_meta(lm, "ft", [1], [param], [], seed=seed))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_restraint_patch_applies_on_its_stack_only_and_reverts_exactly(fresh_tiny, tmp_path, family):
    lm = fresh_tiny(family)
    param = f"{lm.adapter.mlp_out_path(1)}.weight"
    weight = lm.model.get_parameter(param)
    original = weight.detach().clone()
    sigma_hat = float(torch.linalg.matrix_norm(original.double(), ord=2))
    g = torch.Generator().manual_seed(0)
    big = [_delta_patch(lm, param, torch.randn(*weight.shape, generator=g) * sigma_hat, seed) for seed in range(2)]
    stack = PatchStack(lm)
    for patch in big:
        stack.apply(patch)
    edited = weight.detach().clone()
    # a tiny random matrix has a small σ̂: an α with ln α ≥ 1/σ̂ makes F shrink, as 1.2 does on real models
    params = PruneParams(base=max(1.2, math.exp(2 / sigma_hat)))
    correction = restraint_patch(lm, stack, params)
    assert correction.meta["applies_on"] == [p.id for p in big] and correction.requests == []
    assert correction.meta["restrained"][param]["restrained"] >= 1
    path = save_patch(correction, tmp_path / "prune.safetensors")
    loaded = load_patch(path)
    assert loaded.id == correction.id
    stack.apply(loaded)
    restrained_delta = (weight.detach() - original).double()
    assert torch.linalg.matrix_norm(restrained_delta, ord=2) < torch.linalg.matrix_norm((edited - original).double(), ord=2)
    assert "a correction of 2 patches" in loaded.describe()
    # reverting a patch below the correction would leave it on a stack it was not made for
    with pytest.raises(FactpatchError, match="revert"):
        stack.revert(big[0].id)
    stack.revert(loaded.id)
    assert torch.equal(weight, edited)  # the stack as it was, bit for bit
    stack.revert(big[1].id)
    with pytest.raises(FactpatchError, match="made for the stack"):
        stack.apply(loaded)  # on the first patch alone
    stack.revert()
    assert torch.equal(weight, original)
    with pytest.raises(FactpatchError, match="none is applied"):
        restraint_patch(lm, stack)


def test_bad_base_is_refused():
    with pytest.raises(FactpatchError, match="above 1"):
        PruneParams(base=1.0)


def test_command_line_writes_a_correction_that_applies_on_its_stack_only(run, tiny_dir, tmp_path):
    from factpatch.core.models import load_model

    lm = load_model(str(tiny_dir))
    param = f"{lm.adapter.mlp_out_path(1)}.weight"
    weight = lm.model.get_parameter(param)
    sigma_hat = float(torch.linalg.matrix_norm(weight.detach().double(), ord=2))
    g = torch.Generator().manual_seed(1)
    big = save_patch(_delta_patch(lm, param, torch.randn(*weight.shape, generator=g) * sigma_hat, 0), tmp_path / "big.safetensors")
    base = max(1.2, math.exp(2 / sigma_hat))
    code, out, err = run("patch", "restrain", "--model", tiny_dir, big, "--base", base, "--save", tmp_path / "r.safetensors")
    assert code == 0, err
    assert "singular values of the change above the original's largest" in out and "a correction of 1 patches" in out
    code, out, err = run("patch", "apply", "--model", tiny_dir, big, tmp_path / "r.safetensors", "--out", tmp_path / "m")
    assert code == 0, err
    code, out, err = run("patch", "apply", "--model", tiny_dir, tmp_path / "r.safetensors", "--out", tmp_path / "m2")
    assert code == 2 and "was made for the stack" in err and not (tmp_path / "m2").exists()
    code, out, err = run("patch", "restrain", "--model", tiny_dir, big, "--base", "0.5", "--save", tmp_path / "x.safetensors")
    assert code == 2 and "above 1" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.safetensors").exists()
