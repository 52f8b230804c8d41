"""The closed-form rank-one update (paper §3): Ŵk* = v*, the right factor is C⁻¹k*, and Ŵ is the
least-squares edit (ΔW C = Λ k*ᵀ) — also for the factor a real ROME patch stores."""

import pytest
import torch

from factpatch.editing.rome import rank_one_update


def _problem(d_out=12, d_in=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_out, d_in, generator=g)
    K = torch.randn(d_in, 200, generator=g)
    C = K @ K.T / 200  # a second moment: symmetric positive definite
    k_star = torch.randn(d_in, generator=g)
    v_star = torch.randn(d_out, generator=g)
    return W, C, k_star, v_star


def test_update_maps_key_to_value():
    W, C, k_star, v_star = _problem()
    Lambda, c_inv_k = rank_one_update(W, C, k_star, v_star)
    W_hat = W + torch.outer(Lambda, c_inv_k)
    torch.testing.assert_close(W_hat @ k_star, v_star, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(W @ k_star, v_star)  # the edit did something


def test_update_leaves_directions_orthogonal_to_c_inv_k_unchanged():
    # (true of W + Λ rᵀ for *any* pair (Λ, r) when r is the vector projected out; the tests below
    # pin r to C⁻¹k* for the C and k* used)
    W, C, k_star, v_star = _problem(seed=1)
    Lambda, c_inv_k = rank_one_update(W, C, k_star, v_star)
    W_hat = W + torch.outer(Lambda, c_inv_k)
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        x = torch.randn(W.shape[1], generator=g)
        x = x - (x @ c_inv_k) / (c_inv_k @ c_inv_k) * c_inv_k  # project out C⁻¹k*
        torch.testing.assert_close(W_hat @ x, W @ x, rtol=1e-5, atol=1e-5)


def test_update_is_rank_one_and_scale_free_in_C():
    W, C, k_star, v_star = _problem(seed=3)
    Lambda, c_inv_k = rank_one_update(W, C, k_star, v_star)
    Lambda2, c_inv_k2 = rank_one_update(W, 7.0 * C, k_star, v_star)
    torch.testing.assert_close(torch.outer(Lambda, c_inv_k), torch.outer(Lambda2, c_inv_k2), rtol=1e-4, atol=1e-5)
    assert torch.linalg.matrix_rank(torch.outer(Lambda, c_inv_k)) == 1


def test_right_factor_is_c_inverse_k_and_the_edit_is_least_squares():
    """Ŵ = argmin ‖ŴK − WK‖² subject to Ŵk* = v* satisfies (Ŵ − W) C = Λ k*ᵀ (the normal equations,
    paper Eq. 2–3): true for r = C⁻¹k*, false for another right factor such as k* itself."""
    W, C, k_star, v_star = _problem(seed=3)
    Lambda, c_inv_k = rank_one_update(W, C, k_star, v_star)
    torch.testing.assert_close(c_inv_k.double(), torch.linalg.solve(C.double(), k_star.double()), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.outer(Lambda, c_inv_k) @ C, torch.outer(Lambda, k_star), rtol=1e-4, atol=1e-4)
    wrong = k_star * (c_inv_k @ k_star) / (k_star @ k_star)  # same Ŵk* = v*, wrong direction
    assert not torch.allclose(torch.outer(Lambda, wrong) @ C, torch.outer(Lambda, k_star), rtol=1e-2, atol=1e-2)


@pytest.mark.usefixtures("one_thread")
def test_stored_patch_factor_is_c_inverse_k_star(tiny_models, tmp_path):
    """The right factor a ROME patch stores (saved and loaded) is C⁻¹k* for the editor's C and the
    request's k*, recomputed independently; the left factor makes Ŵk* = v*."""
    from factpatch.editing.patch import load_patch, save_patch
    from factpatch.editing.registry import make_editor, method_params
    from factpatch.editing.request import EditRequest
    from factpatch.editing.rome import compute_key_value, context_prefixes, projection_weight
    from factpatch.editing.stats import CorpusSpec

    lm = tiny_models["llama"]
    params = method_params(lm, "rome", {"v_steps": "3", "prefixes": "[[2, 3]]"})
    editor = make_editor(lm, "rome", params, cache_dir=tmp_path, progress=False, corpus=CorpusSpec(n_tokens=256))
    request = EditRequest("{} is located in the city of", "Eiffel Tower", "Rome", "Paris")
    patch = load_patch(save_patch(editor.patch([request]), tmp_path / "p.safetensors"))
    (delta,) = patch.deltas
    C = editor._C.double().to(lm.device)
    kv = compute_key_value(lm, request, params, context_prefixes(lm, params, tmp_path))
    expected = torch.linalg.solve(C, kv.k_star.double())
    torch.testing.assert_close(delta.right.double().to(lm.device), expected, rtol=1e-3, atol=1e-5 * expected.abs().max().item())
    W = projection_weight(lm, params.layer).detach().double()
    left, right = delta.left.double().to(lm.device), delta.right.double().to(lm.device)
    W_hat_k = W @ kv.k_star.double() + left * (right @ kv.k_star.double())
    torch.testing.assert_close(W_hat_k, kv.v_star.double(), rtol=1e-3, atol=1e-4)
