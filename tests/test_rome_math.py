"""The closed-form rank-one update (paper §3): Ŵk* = v*, and nothing changes orthogonally to C⁻¹k*."""

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
