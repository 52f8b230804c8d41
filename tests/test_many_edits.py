"""MEMIT and AlphaEdit: the closed forms, the null-space guarantee, batch patches that revert
exactly, and request files that fail clearly."""

import json

import pytest
import torch
from tiny import FAMILIES, PARALLEL_FAMILIES

from factpatch.api import edit_many
from factpatch.evaluation.sequential import batch_record
from factpatch.editing.alphaedit import AlphaEditParams, alphaedit_solve, null_space_projector
from factpatch.editing.anchor import anchor_norm, anchored_targets
from factpatch.editing.memit import (
    TARGETS_ATTACHMENT,
    MEMITParams,
    compute_targets,
    memit_solve,
    mlp_split_at_subject,
    read_at_subject,
    replayed_edits,
)
from factpatch.core.blocks import mlp_contribution, mlp_out_change_for
from factpatch.core.hooks import act_name
from factpatch.editing.patch import Patch, PatchStack, WeightDelta, applied, load_patch, save_patch
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing.request import EditRequest, read_requests
from factpatch.editing.rome import preserving_metric, rank_one_update
from factpatch.editing.stats import KEYS_ATTACHMENT, CorpusSpec, preserved_keys
from factpatch.editing.values import length_order
from factpatch.core.errors import FactpatchError
from factpatch.core.models import weights_fingerprint

pytestmark = pytest.mark.usefixtures("one_thread")

CORPUS = CorpusSpec(n_tokens=512)
REQUESTS = [
    EditRequest("{} is located in the city of", "Eiffel Tower", "Rome", "Paris"),
    EditRequest("{} plays the sport of", "Lionel Messi", "basketball", "soccer"),
    EditRequest("The mother tongue of {} is", "Danielle Darrieux", "Japanese", "French"),
]
# Random tiny models have residual norms of ~0.1, near-flat logits and diffuse attention: the
# reference clamp (0.75 ‖h_L‖), decay and KL leave δ no room to move a later token's prediction,
# so the tests sharpen the logits, allow a large δ with a small step and drop the KL term.
FAST = {"v_steps": "15", "group_size": "2", "layers": "0-1", "clamp_factor": "100", "weight_decay": "0",
        "v_lr": "0.1", "kl_weight": "0"}
EDITED = (0, 1)


def _sharpened(model_builder, family):
    lm = model_builder(family)
    with torch.no_grad():
        lm.module(lm.adapter.unembed).weight.mul_(30.0)
    return lm


def _random_spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, 3 * d, generator=g)
    return A @ A.T / (3 * d)


# ----------------------------------------------------------------------------- closed forms


def test_memit_with_one_key_is_rome_scaled_by_the_lambda_weighting():
    """Sherman–Morrison: R kᵀ(λC + kkᵀ)⁻¹ = R (C⁻¹k)ᵀ / (λ + kᵀC⁻¹k); at λ → 0 it is ROME's update."""
    d_in, d_out = 12, 7
    g = torch.Generator().manual_seed(1)
    C, W = _random_spd(d_in, 0), torch.randn(d_out, d_in, generator=g)
    k, v = torch.randn(d_in, generator=g), torch.randn(d_out, generator=g)
    Lambda, c_inv_k = rank_one_update(W, C, k, v)
    rome = torch.outer(Lambda, c_inv_k).double()
    R = (v - W @ k)[:, None]  # (d_out, 1): one layer takes the whole residual
    quad = float(k.double() @ torch.linalg.solve(C.double(), k.double()))
    for lam in (1e-6, 0.5, 30.0):
        memit = (R.double() @ memit_solve(k[:, None], C, lam).double().T)
        torch.testing.assert_close(memit * (lam + quad) / quad, rome, rtol=1e-4, atol=1e-5)
    # as λ → 0 the edited matrix maps k to v, as ROME's does
    torch.testing.assert_close((W.double() + R.double() @ memit_solve(k[:, None], C, 1e-6).double().T) @ k.double(),
                               v.double(), rtol=1e-4, atol=1e-4)


def test_memit_preserving_edits_keeps_the_stack_one_least_squares_fit_of_every_batch():
    """With K_p K_pᵀ in the solve, two batches written one after the other give the weights one
    solve over both batches gives (recursive least squares); MEMIT's own sequential solve does not."""
    d_in, d_out, lam = 10, 6, 0.7
    g = torch.Generator().manual_seed(5)
    C, W0 = _random_spd(d_in, 6).double(), torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    K1, K2 = torch.randn(d_in, 3, generator=g, dtype=torch.float64), torch.randn(d_in, 4, generator=g, dtype=torch.float64)
    V1, V2 = torch.randn(d_out, 3, generator=g, dtype=torch.float64), torch.randn(d_out, 4, generator=g, dtype=torch.float64)

    def write(W, K, V, preserved=None):  # Δ = R · solveᵀ with R = V − W K, the residual on the current weights
        return W + (V - W @ K) @ memit_solve(K, C, lam, preserved).double().T

    at_once = write(W0, torch.cat([K1, K2], 1), torch.cat([V1, V2], 1))
    W1 = write(W0, K1, V1)
    torch.testing.assert_close(write(W1, K2, V2, K1 @ K1.T), at_once, rtol=1e-4, atol=1e-4)
    assert float((write(W1, K2, V2) - at_once).norm()) > 1e-2 * float(at_once.norm())  # each batch alone: another fit


def test_rome_in_the_preserving_metric_writes_its_key_and_leaves_earlier_keys_alone():
    """ROME's update in the metric λC + K_p K_pᵀ still maps k* to v* exactly; as λ → 0 it moves
    nothing at the earlier keys K_p, and in C alone it does."""
    d_in, d_out = 12, 7
    g = torch.Generator().manual_seed(3)
    C, W = _random_spd(d_in, 2), torch.randn(d_out, d_in, generator=g)
    K_p = torch.randn(d_in, 4, generator=g, dtype=torch.float64)  # four earlier edits' keys
    k, v = torch.randn(d_in, generator=g), torch.randn(d_out, generator=g)

    def moved_at_earlier_keys(metric: torch.Tensor) -> float:
        Lambda, c_inv_k = rank_one_update(W.double(), metric, k.double(), v.double())
        delta = torch.outer(Lambda, c_inv_k)
        torch.testing.assert_close((W.double() + delta) @ k.double(), v.double(), rtol=1e-8, atol=1e-8)
        return float((delta @ K_p).norm())

    blind = moved_at_earlier_keys(C.double())
    assert blind > 1e-2
    assert moved_at_earlier_keys(preserving_metric(C, K_p @ K_p.T, 1e-8)) < 1e-5 * blind
    assert moved_at_earlier_keys(preserving_metric(C, K_p @ K_p.T, 1.0)) < blind  # in between
    torch.testing.assert_close(preserving_metric(C, K_p @ K_p.T, 2.0), C.double() + K_p @ K_p.T / 2.0)


def test_null_space_projector_keeps_the_low_energy_directions():
    C = _random_spd(16, 2)
    eigenvalues, vectors = torch.linalg.eigh(C.double())
    P = null_space_projector(C, energy=0.05).double()
    rank = int(round(float(torch.trace(P))))
    assert 0 < rank < 16
    assert float(eigenvalues[:rank].sum()) <= 0.05 * float(eigenvalues.sum()) < float(eigenvalues[: rank + 1].sum())
    torch.testing.assert_close(P @ P, P, atol=1e-5, rtol=0)  # a projector
    torch.testing.assert_close(P @ vectors[:, rank:], torch.zeros(16, 16 - rank, dtype=torch.float64), atol=1e-5, rtol=0)
    by_threshold = null_space_projector(C, threshold=float(eigenvalues[3]) + 1e-9)
    assert int(round(float(torch.trace(by_threshold)))) == 4


def test_nullspace_share_script_reports_each_layers_rank_and_share(tiny_dir, tmp_path, monkeypatch, load_script):
    """scripts/nullspace_share.py: the default rule holds at most 10 % of tr C at every layer; an
    absolute threshold above every eigenvalue takes the whole space (rank d, all of tr C)."""
    monkeypatch.setenv("FACTPATCH_CACHE", str(tmp_path / "cache"))
    script = load_script("nullspace_share")
    out = tmp_path / "share.json"
    for extra, check in (([], lambda r: 0 < r["rank"] < r["dim"] and 0 < r["share_of_trace"] <= 0.1),
                         (["--set", "alphaedit.nullspace_threshold=1e9"],
                          lambda r: r["rank"] == r["dim"] and r["share_of_trace"] == pytest.approx(1.0))):
        monkeypatch.setattr("sys.argv", ["nullspace_share.py", "--model", str(tiny_dir), *extra, "--set",
                                         "alphaedit.layers=1-2", "--json", str(out)])
        script.main()
        rows = json.loads(out.read_text())
        assert [r["layer"] for r in rows] == [1, 2] and all(check(r) for r in rows), rows
    sampled = rows
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"The river {i} flows through the town of {i * 7 % 13}." for i in range(40)))
    monkeypatch.setattr("sys.argv", ["nullspace_share.py", "--model", str(tiny_dir), "--set", "alphaedit.layers=1-2",
                                     "--corpus", str(corpus), "--corpus-tokens", "400", "--json", str(out)])
    script.main()
    rows = json.loads(out.read_text())
    assert all(r["corpus"]["corpus"] == "file" and r["corpus"]["n_tokens"] == 400 for r in rows)
    assert all(0 < r["share_of_trace"] <= 0.1 for r in rows)
    # the statistics are the file's, not the sampled text's: another null space
    assert [(r["rank"], r["share_of_trace"]) for r in rows] != [(r["rank"], r["share_of_trace"]) for r in sampled]


def test_alphaedit_update_leaves_preserved_directions_and_earlier_keys_alone():
    d_in, d_out, n = 16, 6, 3
    g = torch.Generator().manual_seed(3)
    C = _random_spd(d_in, 4)
    P = null_space_projector(C, energy=0.3)
    K, R = torch.randn(d_in, n, generator=g), torch.randn(d_out, n, generator=g)
    K_p = P @ torch.randn(d_in, 4, generator=g)  # earlier edits' keys (in the free space, as edits write there)
    for preserved in (torch.zeros(d_in, d_in), K_p @ K_p.T):
        delta = R @ alphaedit_solve(K, P, preserved, alpha=1e-3).T  # (d_out, d_in)
        _, vectors = torch.linalg.eigh(C.double())
        kept = vectors[:, int(round(float(torch.trace(P)))):].float()  # the preserved (high-energy) subspace
        assert delta.norm() > 1e-2
        assert float((delta @ kept).norm()) < 1e-4 * float(delta.norm())
    far = R @ alphaedit_solve(K, P, torch.zeros(d_in, d_in), alpha=1e-3).T
    assert float((delta @ K_p).norm()) < 0.05 * float((far @ K_p).norm())


# ----------------------------------------------------------------------------- editors on tiny models


@pytest.mark.parametrize("family", FAMILIES + PARALLEL_FAMILIES)
@pytest.mark.parametrize("method", ["memit", "alphaedit"])
def test_batch_edit_raises_every_target_and_reverts_bit_for_bit(fresh_tiny, family, method, tmp_path):
    lm = _sharpened(fresh_tiny, family)
    # a small λ (MEMIT) / α (AlphaEdit): the tiny models' keys are small, the solve nearly exact
    params = method_params(lm, method, {**FAST, **({"lambda_per_dim": "1e-3"} if method == "memit" else {"L2": "1e-4"})})
    editor = make_editor(lm, method, params, tmp_path, progress=False, corpus=CORPUS)
    fingerprint = weights_fingerprint(lm.model)
    patch = editor.patch(REQUESTS)
    assert weights_fingerprint(lm.model) == fingerprint  # computing a patch leaves the model alone
    assert patch.layers == list(EDITED) and len(patch.requests) == 3
    assert {d.param for d in patch.deltas} == {f"{lm.adapter.mlp_out_path(l)}.weight" for l in EDITED}
    saved = load_patch(save_patch(patch, tmp_path / "batch.safetensors"))
    assert saved.id == patch.id and saved.attachments.keys() == patch.attachments.keys()
    # What the update guarantees on any model: the block output h_L at the subject moves towards z.
    # (That P(o*) rises is checked on the real model: test_integration.py.)
    Z = compute_targets(lm, REQUESTS, params, editor.prefixes, progress=False).Z
    z_name = act_name("resid_post", EDITED[-1])
    gap_before = (Z - read_at_subject(lm, REQUESTS, [""], [z_name])[z_name][:, 0]).norm(dim=-1)
    with applied(lm, [saved]):
        gap_after = (Z - read_at_subject(lm, REQUESTS, [""], [z_name])[z_name][:, 0]).norm(dim=-1)
    assert weights_fingerprint(lm.model) == fingerprint
    assert float(gap_after.sum()) < 0.9 * float(gap_before.sum()), (gap_before, gap_after)
    assert bool((gap_after < gap_before).all()), (gap_before, gap_after)
    if method == "alphaedit":
        assert set(patch.attachments) == {KEYS_ATTACHMENT.format(layer=l) for l in EDITED}
        assert patch.attachments["keys.1"].shape == (lm.module(lm.adapter.mlp_out_path(1)).weight.shape[
            0 if lm.adapter.mlp_out_transposed else 1], 3)


def test_sequential_alphaedit_protects_the_first_batch(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    params = method_params(lm, "alphaedit", {**FAST, "L2": "1e-6"})  # tiny keys: α must not swamp K_p K_pᵀ
    editor = make_editor(lm, "alphaedit", params, tmp_path, progress=False, corpus=CORPUS)
    stack = PatchStack(lm)
    first = edit_many(lm, REQUESTS[:2], "alphaedit", stack, params, tmp_path, False, corpus=CORPUS).patch
    K1 = first.attachments["keys.1"]
    assert torch.allclose(preserved_keys(stack, 1, K1.shape[0]), (K1.double() @ K1.double().T))
    protected = editor.patch(REQUESTS[2:], stack)
    blind = editor.patch(REQUESTS[2:], None)
    layer1 = lambda p: next(d for d in p.deltas if ".1." in d.param).tensor()  # noqa: E731
    assert float((layer1(protected) @ K1).norm()) < 0.2 * float((layer1(blind) @ K1).norm())
    assert protected.meta["preserved_edits"] == 2


def test_sequential_memit_preserving_edits_protects_the_first_batch(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    params = method_params(lm, "memit", {**FAST, "lambda_per_dim": "1e-3", "preserve_edits": "true"})
    editor = make_editor(lm, "memit", params, tmp_path, progress=False, corpus=CORPUS)
    stack = PatchStack(lm)
    first = edit_many(lm, REQUESTS[:2], "memit", stack, params, tmp_path, False, corpus=CORPUS).patch
    assert set(first.attachments) == {KEYS_ATTACHMENT.format(layer=l) for l in EDITED}
    K1 = first.attachments["keys.1"]
    protected = editor.patch(REQUESTS[2:], stack)
    blind = make_editor(lm, "memit", method_params(lm, "memit", {**FAST, "lambda_per_dim": "1e-3"}), tmp_path,
                        progress=False, corpus=CORPUS).patch(REQUESTS[2:], stack)
    assert not blind.attachments and "preserved_edits" not in blind.meta  # MEMIT's own solve, as before
    layer1 = lambda p: next(d for d in p.deltas if ".1." in d.param).tensor()  # noqa: E731
    assert float((layer1(protected) @ K1).norm()) < 0.05 * float((layer1(blind) @ K1).norm())
    assert protected.meta["preserved_edits"] == 2


def test_replaying_edits_that_hold_is_preserving_them(fresh_tiny, tmp_path):
    """One layer (nothing below it edited, so the keys are the stored ones) and the bare prompt only
    (replay reads bare keys): an earlier edit written nearly exactly has residual ≈ 0, and
    replay_edits' solve is preserve_edits' — R Kᵀ(λC + K_pK_pᵀ + KKᵀ)⁻¹."""
    lm = fresh_tiny("llama")
    common = {**FAST, "layers": "[1]", "prefixes": "[]", "lambda_per_dim": "1e-4"}
    delta = {}
    for name in ("preserve_edits", "replay_edits"):
        params = method_params(lm, "memit", {**common, name: "true"})
        with applied(lm, []) as stack:
            first = edit_many(lm, REQUESTS[:2], "memit", stack, params, tmp_path, False, corpus=CORPUS).patch
            later = make_editor(lm, "memit", params, tmp_path, progress=False, corpus=CORPUS).patch(REQUESTS[2:], stack)
        delta[name] = later.deltas[0].tensor()
        if name == "replay_edits":
            assert later.meta["replayed_edits"] == 2 and "keys.1" not in later.attachments
            assert first.attachments[TARGETS_ATTACHMENT].shape == (2, lm.model.config.hidden_size)
    plain = make_editor(lm, "memit", method_params(lm, "memit", common), tmp_path, progress=False,
                        corpus=CORPUS).patch(REQUESTS[2:], None).deltas[0].tensor()
    gap = float((delta["replay_edits"] - delta["preserve_edits"]).norm())
    assert gap < 0.02 * float(delta["preserve_edits"].norm()), gap
    assert gap < 0.1 * float((plain - delta["preserve_edits"]).norm())  # the earlier edits did change the solve


@pytest.mark.parametrize("family", ["llama", "gemma3"])  # gemma3: R mapped through the post-norm, 0 to exactly 0
def test_replay_with_scale_zero_is_preserving_with_fresh_keys(fresh_tiny, tmp_path, family):
    """γ = 0 holds the earlier edits where they are: with one layer and bare prompts the keys read
    now are the stored ones, so the solve is preserve_edits' even where an earlier edit is far
    from its z (λ large: each edit written only part of the way); γ = 1 then differs."""
    lm = fresh_tiny(family)
    common = {**FAST, "layers": "[1]", "prefixes": "[]", "lambda_per_dim": "1.0"}
    delta = {}
    for name, extra in (("preserve", {"preserve_edits": "true"}),
                        ("hold", {"replay_edits": "true", "replay_scale": "0"}),
                        ("replay", {"replay_edits": "true"})):
        params = method_params(lm, "memit", {**common, **extra})
        with applied(lm, []) as stack:
            edit_many(lm, REQUESTS[:2], "memit", stack, params, tmp_path, False, corpus=CORPUS)
            delta[name] = make_editor(lm, "memit", params, tmp_path, progress=False,
                                      corpus=CORPUS).patch(REQUESTS[2:], stack).deltas[0]
            if name == "hold":  # the held edits' columns write nothing: the delta is the batch's width
                assert delta[name].left is not None and delta[name].left.shape[1] == len(REQUESTS[2:])
            delta[name] = delta[name].tensor()
    scale = float(delta["preserve"].norm())
    assert float((delta["hold"] - delta["preserve"]).norm()) < 1e-4 * scale
    assert float((delta["replay"] - delta["preserve"]).norm()) > 0.05 * scale  # the residuals were not ≈ 0
    for bad, message in (({"replay_edits": "true", "replay_scale": "1.5"}, "in \\[0, 1\\]"),
                         ({"replay_scale": "0.5"}, "set replay_edits as well")):
        with pytest.raises(FactpatchError, match=message):
            method_params(lm, "memit", {**common, **bad})


# gemma3: R is mapped through the post-norm by damped Gauss–Newton, which on this random tiny model
# writes one batch — new requests as well as replayed ones — only part of the way (a second batch
# goes further); llama and GPT-2 (Conv1D) are written back almost exactly.
@pytest.mark.parametrize(("method", "family", "written_back"), [
    ("memit", "llama", 0.3), ("memit", "gpt2", 0.3), ("memit", "gemma3", 0.7), ("alphaedit", "llama", 0.3)])
def test_replay_writes_back_an_earlier_edit_that_a_later_change_wore_down(fresh_tiny, tmp_path, method, family,
                                                                          written_back):
    lm = fresh_tiny(family)
    settings = {"memit": {"lambda_per_dim": "1e-3"}, "alphaedit": {"L2": "1e-6"}}[method]
    params = method_params(lm, method, {**FAST, **settings, "replay_edits": "true"})
    editor = make_editor(lm, method, params, tmp_path, progress=False, corpus=CORPUS)
    L = params.z_layer
    stack = PatchStack(lm)
    first = edit_many(lm, REQUESTS[:2], method, stack, params, tmp_path, False, corpus=CORPUS).patch
    assert set(first.attachments) == {TARGETS_ATTACHMENT}  # AlphaEdit's stored keys are not needed
    save_patch(first, tmp_path / "first.safetensors")
    Z = load_patch(tmp_path / "first.safetensors").attachments[TARGETS_ATTACHMENT].to(lm.device)  # the z travel with the patch

    def miss() -> float:  # how far the earlier edits' h_L at the bare prompt are from their z
        h = read_at_subject(lm, REQUESTS[:2], [""], [act_name("resid_post", L)])[act_name("resid_post", L)][:, 0]
        return float((Z - h).norm(dim=-1).mean())

    held = miss()
    # a later change below the edits (another tool's patch: no requests, nothing to replay)
    param = f"{lm.adapter.mlp_out_path(0)}.weight"
    noise = 0.5 * torch.randn(lm.module(lm.adapter.mlp_out_path(0)).weight.shape, generator=torch.Generator().manual_seed(1))
    stack.apply(Patch([WeightDelta(param, dense=noise)], {"fingerprint": lm.fingerprint}))
    worn = miss()
    assert worn > 2 * held
    stack.apply(editor.patch(REQUESTS[2:], stack))
    assert miss() < written_back * worn, (held, worn, miss())


def test_replayed_edits_are_the_stacks_requests_but_those_asked_again_later():
    from types import SimpleNamespace

    def batch(requests, z0):
        return Patch([], {"requests": [r.to_dict() for r in requests], "layers": [0, 1], "method": "memit"},
                     {TARGETS_ATTACHMENT: torch.arange(z0, z0 + len(requests)).float().unsqueeze(1).expand(-1, 3)})

    moved = EditRequest("{} is located in the city of", "Eiffel Tower", "Berlin")
    twin = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "German")  # one batch, two targets
    stack = SimpleNamespace(applied=[batch(REQUESTS[:2], 0), batch([REQUESTS[2], twin], 10), batch([moved], 20)])
    replay = replayed_edits(stack, [EditRequest("{} plays the sport of", "Lionel Messi", "golf")], z_layer=1)
    # newest first; Messi is asked again now and the tower was moved again later
    assert replay.requests == [moved, REQUESTS[2], twin]
    assert replay.Z[:, 0].tolist() == [20, 10, 11]
    stack.applied.insert(0, Patch([], {"requests": [REQUESTS[0].to_dict()], "layers": [1]}))  # e.g. a ROME patch
    with pytest.raises(FactpatchError, match="carries no z"):
        replayed_edits(stack, [], z_layer=1)
    with pytest.raises(FactpatchError, match="at layer 1, this batch writes at layer 4"):
        replayed_edits(SimpleNamespace(applied=[batch(REQUESTS[:1], 0)]), [], z_layer=4)
    with pytest.raises(FactpatchError, match="not both"):
        MEMITParams(layers=(0, 1), preserve_edits=True, replay_edits=True)
    with pytest.raises(FactpatchError, match="not both"):
        AlphaEditParams(layers=(0, 1), preserve_contexts=True, replay_edits=True)


def test_preserving_every_context_key_protects_an_earlier_edit_in_each_context(fresh_tiny, tmp_path):
    # The reference keeps an earlier edit's key averaged over its contexts; preserve_contexts keeps
    # each context's key (weighted as in the average), so a later batch leaves every one of them alone.
    from factpatch.editing.memit import context_weights

    lm = fresh_tiny("llama")
    overrides = {**FAST, "L2": "1e-6"}
    mean_params = method_params(lm, "alphaedit", overrides)
    context_params = method_params(lm, "alphaedit", {**overrides, "preserve_contexts": "true"})
    first = {}
    for name, params in (("mean", mean_params), ("contexts", context_params)):
        with applied(lm, []) as stack:  # reverted after each
            first[name] = edit_many(lm, REQUESTS[:2], "alphaedit", stack, params, tmp_path, False, corpus=CORPUS).patch
            editor = make_editor(lm, "alphaedit", params, tmp_path, progress=False, corpus=CORPUS)
            first[name + "_later"] = editor.patch(REQUESTS[2:], stack)
    weights = context_weights(mean_params.prefix_spec()).to(lm.device)
    key = act_name("mlp_key", 1)
    with applied(lm, [first["mean"]]):  # the first batch's keys at layer 1: W_1's input, the same either way
        per_context = read_at_subject(lm, REQUESTS[:2], editor.prefixes, [key])[key]  # (2, p, d)
    stored = first["contexts"].attachments["keys.1"].to(lm.device)  # (d, 2 · p): √w_p k_{r,p}
    assert stored.shape == (per_context.shape[-1], 2 * len(weights))
    assert torch.allclose(stored @ stored.T, torch.einsum("npd,p,npe->de", per_context, weights, per_context), atol=1e-6)
    assert first["mean"].attachments["keys.1"].shape == (per_context.shape[-1], 2)
    layer1 = lambda p: next(d for d in p.deltas if ".1." in d.param).tensor().to(lm.device)  # noqa: E731
    moved = {name: float((layer1(first[name + "_later"]) @ per_context.reshape(-1, per_context.shape[-1]).T).norm())
             for name in ("mean", "contexts")}
    assert moved["contexts"] < 0.5 * moved["mean"], moved


def test_reverting_one_batch_equals_applying_the_others_in_order(fresh_tiny, tmp_path):
    lm = fresh_tiny("gpt2")
    params = method_params(lm, "memit", FAST)
    editor = make_editor(lm, "memit", params, tmp_path, progress=False, corpus=CORPUS)
    patches = [editor.patch([r]) for r in REQUESTS]
    original = weights_fingerprint(lm.model)
    stack = PatchStack(lm)
    for p in patches:
        stack.apply(p)
    stack.revert(patches[1].id)
    reverted = weights_fingerprint(lm.model)
    stack.revert()
    assert weights_fingerprint(lm.model) == original
    with applied(lm, [patches[0], patches[2]]):
        assert weights_fingerprint(lm.model) == reverted


def test_rome_on_a_list_is_one_edit_after_another(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    params = method_params(lm, "rome", {"v_steps": "4", "prefixes": "[[2, 3]]"})
    editor = make_editor(lm, "rome", params, tmp_path, progress=False, corpus=CORPUS)
    one = editor.patch(REQUESTS[:1])
    both = editor.patch(REQUESTS[:2])
    assert len(both.deltas) == 2 and all(d.kind == "rank1" for d in both.deltas)
    torch.testing.assert_close(both.deltas[0].left, one.deltas[0].left)  # the first edit is the same
    with applied(lm, [one]):
        second = editor.patch(REQUESTS[1:2])  # the second is computed with the first applied
    torch.testing.assert_close(both.deltas[1].left, second.deltas[0].left)


def test_sequential_rome_preserving_edits_protects_the_earlier_edits_and_carries_its_keys(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    settings = {"v_steps": "4", "prefixes": "[[2, 3]]"}
    params = method_params(lm, "rome", {**settings, "preserve_edits": "true", "lambda_per_dim": "1e-6"})
    editor = make_editor(lm, "rome", params, tmp_path, progress=False, corpus=CORPUS)
    stack = PatchStack(lm)
    first = edit_many(lm, REQUESTS[:2], "rome", stack, params, tmp_path, False, corpus=CORPUS).patch
    layer = params.layer
    K1 = first.attachments[KEYS_ATTACHMENT.format(layer=layer)]
    assert set(first.attachments) == {KEYS_ATTACHMENT.format(layer=layer)} and K1.shape[1] == 2
    assert first.meta["preserved_edits"] == 0
    rank_one = lambda delta: torch.outer(delta.left, delta.right)  # noqa: E731  (d_out, d_in): Λ (C⁻¹k*)ᵀ
    # within the list: the second edit already left the first one's key alone, the first wrote its own
    assert float((rank_one(first.deltas[1]) @ K1[:, 0]).norm()) < 1e-3 * float((rank_one(first.deltas[0]) @ K1[:, 0]).norm())
    protected = editor.patch(REQUESTS[2:], stack)
    blind = make_editor(lm, "rome", method_params(lm, "rome", settings), tmp_path, progress=False,
                        corpus=CORPUS).patch(REQUESTS[2:], stack)
    assert not blind.attachments and "preserved_edits" not in blind.meta  # the paper's ROME, as before
    moved = lambda p: float((rank_one(p.deltas[0]) @ K1).norm())  # noqa: E731
    assert moved(protected) < 1e-3 * moved(blind)
    assert protected.meta["preserved_edits"] == 2
    # the patch file keeps the keys, so a stack loaded from disk protects them as well
    path = save_patch(protected, tmp_path / "p.safetensors")
    torch.testing.assert_close(load_patch(path).attachments[KEYS_ATTACHMENT.format(layer=layer)],
                               protected.attachments[KEYS_ATTACHMENT.format(layer=layer)])


def test_factored_delta_becomes_dense_when_that_is_smaller():
    small = WeightDelta.factored("w", torch.randn(8, 2), torch.randn(16, 2), transposed=False)
    assert small.kind == "lowrank" and small.tensor().shape == (8, 16)
    big = WeightDelta.factored("w", torch.randn(8, 7), torch.randn(16, 7), transposed=True)
    assert big.kind == "dense" and big.tensor().shape == (16, 8)
    torch.testing.assert_close(big.tensor(), (big.dense))


def test_factored_delta_drops_the_columns_that_write_nothing():
    left, right = torch.randn(8, 7), torch.randn(16, 7)
    left[:, 2:] = 0  # five columns held in place (replay_scale 0): only two write
    kept = WeightDelta.factored("w", left, right, transposed=False)
    assert kept.kind == "lowrank" and kept.left.shape == (8, 2) and kept.right.shape == (16, 2)
    torch.testing.assert_close(kept.tensor(), left @ right.T)
    left[0, 3] = float("nan")
    assert WeightDelta.factored("w", left, right, transposed=False).left.shape[1] == 3  # NaN stays visible


# ----------------------------------------------------------------------------- request files


def _write(tmp_path, lines):
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_request_file_reads_targets_in_either_spelling(tmp_path):
    path = _write(tmp_path, [
        json.dumps({"prompt": "{} is in", "subject": "Eiffel Tower", "target": "Rome"}),
        "",
        json.dumps({"prompt": "Lionel Messi plays", "subject": "Lionel Messi", "target_new": "golf", "target_true": "soccer"}),
    ])
    first, second = read_requests(path)
    assert first.target_new == "Rome" and first.target_true is None
    assert second.prompt == "{} plays" and second.target_true == "soccer"


@pytest.mark.parametrize("line, message", [
    ("not json", "requests.jsonl:2: not JSON"),
    ('{"prompt": "no subject slot", "subject": "X", "target": "Y"}', "requests.jsonl:2: subject 'X' is not in the prompt"),
    ('{"prompt": "{} is", "subject": "X", "target": " "}', "requests.jsonl:2: 'target' is missing or empty"),
    ('{"prompt": "{} is", "subject": "", "target": "Y"}', "requests.jsonl:2: 'subject' is missing or empty"),
    ('{"prompt": "{} is in", "subject": "Eiffel Tower", "target": "Oslo"}', "asked for two targets"),
    ("[1, 2]", "requests.jsonl:2: expected a JSON object"),
])
def test_bad_request_files_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, [json.dumps({"prompt": "{} is in", "subject": "Eiffel Tower", "target": "Rome"}), line])
    with pytest.raises(FactpatchError, match=message.replace("(", r"\(").replace("'", "'")):
        read_requests(path)


def test_missing_and_empty_request_files(tmp_path):
    with pytest.raises(FactpatchError, match="request file not found"):
        read_requests(tmp_path / "nope.jsonl")
    with pytest.raises(FactpatchError, match="no edit requests"):
        read_requests(_write(tmp_path, [""]))


def test_layer_range_outside_the_model_is_refused(tiny_models):
    lm = tiny_models["llama"]
    with pytest.raises(FactpatchError, match="layer 5 out of range"):
        method_params(lm, "memit", {"layers": "5-7"})
    with pytest.raises(FactpatchError, match="ascending"):
        method_params(lm, "alphaedit", {"layers": "[2, 1]"})


def test_a_requests_z_does_not_depend_on_its_batch(fresh_tiny, tmp_path, monkeypatch):
    """Requests share a batch (and leave it when they converge) but never a δ: z alone = z together.
    Together, the essence rows run in a pass of their own; alone, in the rewrite rows' pass."""
    from factpatch.editing import values

    lm = _sharpened(fresh_tiny, "llama")
    params = method_params(lm, "memit", {**FAST, "group_size": "3", "early_stop_nll": "0"})
    prefixes = make_editor(lm, "memit", params, tmp_path, progress=False, corpus=CORPUS).prefixes
    final_nll = sorted(h[-1]["nll"] for h in compute_targets(lm, REQUESTS, params, prefixes, progress=False).losses)
    params = method_params(lm, "memit", {**FAST, "group_size": "3", "early_stop_nll": str(final_nll[1])})
    monkeypatch.setattr(values, "ESSENCE_APART_FROM", 0)
    together = compute_targets(lm, REQUESTS, params, prefixes, progress=False)
    monkeypatch.setattr(values, "ESSENCE_APART_FROM", 10**9)
    assert length_order(lm, REQUESTS) != [0, 1, 2]  # grouped by suffix length: results are put back in place
    assert len(set(together.steps)) > 1  # some stopped early, so the batch shrank on the way
    for i, request in enumerate(REQUESTS):
        alone = compute_targets(lm, [request], params, prefixes, progress=False)
        assert alone.steps[0] == together.steps[i]
        torch.testing.assert_close(alone.Z[0], together.Z[i], rtol=1e-4, atol=1e-5)


def test_most_probable_early_stop_ends_each_z_where_o_star_first_wins(fresh_tiny, tmp_path):
    """ENCORE's early stop: a request stops at the first step where every token of o* is the argmax
    in every context — the same trajectory as without it, cut there; one that never gets there runs on."""
    lm = _sharpened(fresh_tiny, "llama")
    # the subject ends the prompt, so δ sits where o* is read and can make it the argmax on a random model
    requests = [EditRequest("We talked about {}", "Eiffel Tower", "Rome"),
                EditRequest("Then came {}", "Lionel Messi", "tennis"),
                EditRequest("A song by {}", "Danielle Darrieux", "Japan")]
    settings = {**FAST, "group_size": "3", "early_stop_nll": "0", "v_steps": "25"}
    params = method_params(lm, "memit", settings)
    prefixes = make_editor(lm, "memit", params, tmp_path, progress=False, corpus=CORPUS).prefixes
    full = compute_targets(lm, requests, params, prefixes, progress=False)
    stopping = method_params(lm, "memit", {**settings, "early_stop_most_probable": "true"})
    assert stopping.early_stop_most_probable is True
    cut = compute_targets(lm, requests, stopping, prefixes, progress=False)
    stopped_early = 0
    for i in range(len(requests)):
        # the two trajectories agree up to the cut, so the cut run's flags are the full run's there
        wins = [h["most_probable"] for h in cut.losses[i]]
        assert not any(wins[:-1])  # it stops at the first step o* wins, not later
        if cut.steps[i] < full.steps[i]:
            stopped_early += 1
            assert wins[-1]
            assert cut.losses[i][-1]["nll"] > full.losses[i][-1]["nll"]  # a z less sure of o*
        else:
            assert cut.steps[i] == full.steps[i]
        assert "most_probable" not in full.losses[i][0]  # without the option, no argmax is taken
        for a, b in zip(cut.losses[i], full.losses[i]):
            assert a["nll"] == pytest.approx(b["nll"], rel=1e-3, abs=1e-5)
    assert stopped_early > 0


def test_a_patch_file_written_before_batches_existed_still_loads_and_applies(tiny_models, tmp_path):
    """The format-1 layout of a single ROME edit, as earlier versions wrote it (no `layers`,
    `requests` or attachments)."""
    from safetensors.torch import save_file

    lm = tiny_models["llama"]
    param = f"{lm.adapter.mlp_out_path(1)}.weight"
    left, right = torch.randn(32), torch.randn(64)
    meta = {"format_version": 1, "fingerprint": lm.fingerprint, "model": lm.name, "method": "rome", "layer": 1,
            "module": lm.adapter.mlp_out_path(1), "created": "2026-11-20T10:00:00+00:00",
            "request": {"prompt": "{} is in", "subject": "Eiffel Tower", "target_new": "Rome", "target_true": "Paris"},
            "deltas": [{"param": param, "transposed": False, "kind": "rank1"}]}
    path = tmp_path / "old.safetensors"
    save_file({"0.left": left, "0.right": right}, str(path), metadata={"factpatch": json.dumps(meta)})
    patch = load_patch(path)
    assert patch.layers == [1] and patch.requests[0]["target_new"] == "Rome" and patch.attachments == {}
    assert "rome layer 1: Eiffel Tower is in -> Rome" in patch.describe()
    before = lm.model.get_parameter(param).detach().clone()
    with applied(lm, [patch]):
        torch.testing.assert_close(lm.model.get_parameter(param), before + torch.outer(left, right).to(before.device))
    assert torch.equal(lm.model.get_parameter(param), before)


def test_editors_write_a_data_sets_conflicting_cases_and_user_input_is_refused(fresh_tiny, tmp_path, caplog):
    """CounterFact in file order asks for two targets for one fact within a batch of 100 (cases
    1300–1399): the reference protocol edits both; a user's request list with such a pair is an error."""
    lm = _sharpened(fresh_tiny, "llama")
    pair = [REQUESTS[0], EditRequest("{} is located in the city of", "Eiffel Tower", "Berlin", "Paris"), REQUESTS[1]]
    params = method_params(lm, "memit", {**FAST, "lambda_per_dim": "1e-3"})
    editor = make_editor(lm, "memit", params, tmp_path, progress=False, corpus=CORPUS)
    with caplog.at_level("WARNING", logger="factpatch.editing.request"):
        patch = editor.patch(pair)
    assert [r["target_new"] for r in patch.requests] == ["Rome", "Berlin", "basketball"]
    assert any("asked for two targets" in r.message for r in caplog.records)
    assert batch_record("memit", 0, patch, PatchStack(lm))["conflicting_requests"] == 1  # batches.jsonl says so
    with pytest.raises(FactpatchError, match="asked for two targets"):
        edit_many(lm, pair, "memit", params=params, progress=False)


@pytest.mark.parametrize("family", FAMILIES + PARALLEL_FAMILIES)
def test_reads_between_layer_writes_equal_fresh_passes_and_stored_keys_are_the_final_ones(fresh_tiny, family, tmp_path):
    """Step 2 reads each layer's keys starting from the residual stream kept by the read before
    (the blocks below a written layer do not change): the same values as a pass from the
    embedding. And the keys AlphaEdit stores are the keys once every layer is written."""
    from factpatch.editing.memit import SubjectReader, context_weights

    lm = _sharpened(fresh_tiny, family)
    params = method_params(lm, "alphaedit", {**FAST, "layers": "1-2", "L2": "1e-4"})
    editor = make_editor(lm, "alphaedit", params, tmp_path, progress=False, corpus=CORPUS)
    reader = SubjectReader(lm, REQUESTS, editor.prefixes, chunk_rows=4)  # several chunks, each kept
    names = {layer: [act_name("mlp_key", layer), act_name("resid_post", 2)] for layer in (1, 2)}
    first = reader.read(names[1], keep=1)
    assert all(torch.equal(first[n], read_at_subject(lm, REQUESTS, editor.prefixes, names[1], 4)[n]) for n in names[1])
    W = lm.module(lm.adapter.mlp_out_path(1)).weight
    with torch.no_grad():
        W.add_(0.5 * W.std() * torch.randn(W.shape, generator=torch.Generator().manual_seed(0)).to(W.device))
    second = reader.read(names[2], keep=2)
    fresh = read_at_subject(lm, REQUESTS, editor.prefixes, names[2], 4)
    assert all(torch.equal(second[n], fresh[n]) for n in names[2])
    assert not torch.equal(second[names[2][1]], first[names[2][1]])  # the write reached h_L
    with pytest.raises(ValueError, match="cannot see"):
        reader.read([act_name("mlp_key", 1)])  # below the kept layer: not computed by this read

    patch = editor.patch(REQUESTS)
    weights = context_weights(params.prefix_spec()).to(lm.device)
    with applied(lm, [patch]):
        for layer in (1, 2):
            key = act_name("mlp_key", layer)
            after = torch.einsum("npd,p->dn", read_at_subject(lm, REQUESTS, editor.prefixes, [key])[key], weights)
            assert torch.allclose(patch.attachments[KEYS_ATTACHMENT.format(layer=layer)].to(after.device), after, rtol=1e-5,
                                  atol=1e-6)


def _post(lm, layer, y):
    with torch.no_grad():
        return mlp_contribution(lm, layer, y)


def test_a_residual_change_is_mapped_through_the_norm_after_the_mlp(tiny_models):
    # Gemma normalises W_proj's output before the residual stream: the change W_proj must make is
    # not the residual change R (on Gemma 3 270M ~100× smaller), and the batch update asks for the former.
    lm = tiny_models["gemma3"]
    g = torch.Generator().manual_seed(0)
    d_out = lm.module(lm.adapter.mlp_out_path(1)).weight.shape[0]
    y = torch.randn(5, d_out, generator=g).to(lm.device)
    wanted = _post(lm, 1, y + 0.1 * torch.randn(5, d_out, generator=g).to(lm.device)) - _post(lm, 1, y)  # reachable
    # μ small, not ~0: the norm's JᵀJ is singular along y (it undoes any rescaling), and at damping
    # 1e-8 float32's rounding in J outweighs μ there (with transformers 5.25 the steps diverged)
    change = mlp_out_change_for(lm, 1, y, wanted, damping=1e-5, steps=4)
    made = _post(lm, 1, y + change) - _post(lm, 1, y)
    assert float((made - wanted).norm()) < 1e-2 * float(wanted.norm())
    assert float((change - wanted).norm()) > 0.1 * float(wanted.norm())  # not the identity here
    # without a norm after the MLP the change is R itself
    assert mlp_out_change_for(tiny_models["llama"], 1, y, wanted) is wanted


def test_damping_keeps_out_directions_the_norm_barely_passes(fresh_tiny):
    # Gemma 3 270M's post-norm weights (1 + w) run from 0 to ~800: matching R where they are ~0
    # asked for ‖Δ_l‖ up to 250,000 ‖W_l‖ undamped (runs/seq-gemma3-cf-2000/diagnosis).
    lm = fresh_tiny("gemma3")
    norm = lm.module(lm.adapter.block(1)).get_submodule(lm.adapter.mlp_post[0])
    d = norm.weight.shape[0]
    with torch.no_grad():
        norm.weight.fill_(0.0)
        norm.weight[: d // 2] = -1.0 + 1e-3  # half the directions pass 1e-3 of what the others pass
    g = torch.Generator().manual_seed(1)
    y = torch.randn(3, d, generator=g).to(lm.device)
    wanted = 0.1 * torch.randn(3, d, generator=g).to(lm.device)  # ~10 % of the MLP's contribution, every direction
    loose = mlp_out_change_for(lm, 1, y, wanted, damping=1e-12, steps=1)
    damped = mlp_out_change_for(lm, 1, y, wanted)  # the default damping
    assert float(loose.norm()) > 10 * float(y.norm())
    assert float(damped.norm()) < 0.5 * float(y.norm())
    made = _post(lm, 1, y + damped) - _post(lm, 1, y)  # ... and still makes the open half of R
    assert float((made - wanted)[:, d // 2 :].norm()) < 0.05 * float(wanted[:, d // 2 :].norm())


# ----------------------------------------------------------------------------- norm anchoring (NAS)


def test_anchoring_rescales_each_v_star_to_the_anchor_and_skips_the_long_ones():
    g = torch.Generator().manual_seed(0)
    r, H = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    v_star = torch.randn(4, 6, generator=g) * torch.tensor([[1.0], [2.0], [3.0], [10.0]])
    Z, skipped = anchored_targets(r + v_star, H, r, a=2.5, skip_factor=2.0)
    assert skipped.tolist() == [False, False, bool(v_star[2].norm() > 5.0), True]
    kept = ~skipped
    assert torch.allclose((Z - r)[kept].norm(dim=-1), torch.full((int(kept.sum()),), 2.5))
    assert torch.allclose(torch.nn.functional.cosine_similarity((Z - r)[kept], v_star[kept]), torch.ones(int(kept.sum())))
    assert torch.equal(Z[skipped], H[skipped])  # not written: z' = h_L
    norms = torch.arange(1.0, 21.0)  # 20 values: the largest 5 % is one of them
    assert anchor_norm(norms, 0.05) == pytest.approx(10.0) and anchor_norm(norms, 0.0) == pytest.approx(10.5)


@pytest.mark.parametrize("family", ["gemma3", "gptj"])
def test_norm_anchoring_writes_every_edit_at_the_unedited_models_anchor(fresh_tiny, family, tmp_path, caplog):
    lm = _sharpened(fresh_tiny, family)
    params = method_params(lm, "alphaedit", {**FAST, "L2": "1e-4", "norm_anchor": "true"})
    editor = make_editor(lm, "alphaedit", params, tmp_path, progress=False, corpus=CORPUS)
    with caplog.at_level("WARNING", logger="factpatch.editing.memit"):
        found, written, meta = editor.targets(REQUESTS, None, None)
    assert any("from this batch's 3 request(s) only" in r.message for r in caplog.records)  # a thin anchor is said so
    L = EDITED[-1]
    # r, what precedes L's MLP, read independently: resid_mid (sequential blocks, through Gemma's
    # post-norm), or h_L less W_proj's output (GPT-J: attention and MLP side by side)
    if lm.adapter.sequential:
        r = read_at_subject(lm, REQUESTS, [""], [act_name("resid_mid", L)])[act_name("resid_mid", L)][:, 0]
    else:
        read = read_at_subject(lm, REQUESTS, [""], [act_name("resid_post", L), act_name("mlp_out", L)])
        r = read[act_name("resid_post", L)][:, 0] - read[act_name("mlp_out", L)][:, 0]
    v_star = (found.Z - r).norm(dim=-1)
    assert meta["norm_anchor"] == pytest.approx(float(v_star.mean()), rel=1e-4)  # 3 requests: none trimmed
    assert meta["v_star_norm"] == pytest.approx(v_star.tolist(), rel=1e-3)
    kept = [i for i in range(3) if i not in meta["norm_anchor_skipped"]]
    assert kept and torch.allclose((written.Z - r)[kept].norm(dim=-1), torch.tensor(meta["norm_anchor"], device=lm.device).expand(len(kept)),
                                   rtol=1e-4)
    assert not torch.equal(written.Z, found.Z)
    # the stack's first batch carries the anchor; a later batch, on the edited model, uses it
    loose = method_params(lm, "alphaedit", {**FAST, "L2": "1e-4", "norm_anchor": "true", "norm_anchor_skip": "1e9"})
    editor = make_editor(lm, "alphaedit", loose, tmp_path, progress=False, corpus=CORPUS)
    with applied(lm, []) as stack:
        first, first_targets = editor.patch_and_targets(REQUESTS[:2], stack)
        assert torch.allclose(first_targets.Z, found.Z[:2], atol=1e-5)  # what a run saves: z as found
        stack.apply(first)
        later = editor.patch(REQUESTS[2:], stack)
        _, later_written, _ = editor.targets(REQUESTS[2:], stack, None)
        _, r_later = mlp_split_at_subject(lm, REQUESTS[2:], L)
    anchor = first.meta["norm_anchor"]
    assert later.meta["norm_anchor"] == anchor != pytest.approx(later.meta["v_star_norm"][0], rel=1e-3)
    assert float((later_written.Z - r_later).norm()) == pytest.approx(anchor, rel=1e-4)


def test_norm_anchoring_skips_what_it_cannot_anchor_and_refuses_a_stack_without_an_anchor(fresh_tiny, tmp_path):
    lm = _sharpened(fresh_tiny, "llama")
    plain = method_params(lm, "alphaedit", {**FAST, "L2": "1e-4"})
    tiny_anchor = method_params(lm, "alphaedit", {**FAST, "L2": "1e-4", "norm_anchor": "true", "norm_anchor_value": "1e-6"})
    written = make_editor(lm, "alphaedit", plain, tmp_path, progress=False, corpus=CORPUS).patch(REQUESTS)
    skipped = make_editor(lm, "alphaedit", tiny_anchor, tmp_path, progress=False, corpus=CORPUS).patch(REQUESTS)
    assert skipped.meta["norm_anchor_skipped"] == [0, 1, 2] and skipped.meta["norm_anchor"] == 1e-6
    for d_skip, d_written in zip(skipped.deltas, written.deltas, strict=True):  # every z' = h_L: nothing to write
        assert float(d_skip.tensor().norm()) < 1e-4 * float(d_written.tensor().norm())
    anchored = method_params(lm, "alphaedit", {**FAST, "norm_anchor": "true"})
    with applied(lm, [written]) as stack:
        with pytest.raises(FactpatchError, match="norm_anchor_value"):
            make_editor(lm, "alphaedit", anchored, tmp_path, progress=False, corpus=CORPUS).patch(REQUESTS[:1], stack)
    with pytest.raises(FactpatchError, match="norm_anchor_skip"):
        method_params(lm, "alphaedit", {"norm_anchor_skip": "0"})


def test_statistics_needed_on_top_of_a_stack_are_the_unedited_models(fresh_tiny, tmp_path):
    """C, the prefixes and the corpus they come from are cached under the model's fingerprint, which
    names the unedited weights: an editor that first needs them with patches applied (a resumed
    sequential run, `edit --patch` on an empty cache) computes them with the patches taken off, and
    leaves the stack's weights exactly as they were."""
    from factpatch.editing.stats import key_second_moments

    lm = fresh_tiny("llama")
    first = method_params(lm, "memit", {**FAST, "layers": "0-1"})
    stack = PatchStack(lm)
    edit_many(lm, REQUESTS[:2], "memit", stack, first, tmp_path / "first", False, corpus=CORPUS)
    edited = weights_fingerprint(lm.model)
    on_edited = key_second_moments(lm, [2], CORPUS, tmp_path / "edited", progress=False)[2]  # what the bug cached
    later = method_params(lm, "memit", {**FAST, "layers": "1-2"})
    editor = make_editor(lm, "memit", later, tmp_path / "later", progress=False, corpus=CORPUS)
    editor.prepare(stack)
    assert weights_fingerprint(lm.model) == edited  # the stack is back, bit for bit
    blind = make_editor(lm, "memit", later, tmp_path / "blind", progress=False, corpus=CORPUS)
    blind.prepare()  # not told of the stack: the edited model's statistics
    assert torch.equal(blind.C(2), on_edited)
    stack.revert()
    on_unedited = key_second_moments(lm, [2], CORPUS, tmp_path / "unedited", progress=False)[2]
    assert torch.equal(editor.C(2), on_unedited)
    assert not torch.allclose(on_edited, on_unedited)  # the patches at layers 0-1 move the keys at layer 2


def test_a_corpus_file_is_known_by_its_bytes_not_its_path_or_time(tmp_path):
    import os
    import shutil

    first = tmp_path / "a.txt"
    first.write_text("One document.\n\nAnother document.")
    copy = tmp_path / "elsewhere" / "b.txt"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    os.utime(copy, (1, 1))
    assert CorpusSpec(first).key() == CorpusSpec(copy).key()  # the same cached statistics
    record = CorpusSpec(copy, 300).record()
    assert record["path"] == str(copy) and record["n_tokens"] == 300
    assert CorpusSpec.from_record(record) == CorpusSpec(copy, 300)
    copy.write_text("Other words.")
    assert CorpusSpec(first).key() != CorpusSpec(copy).key()
    with pytest.raises(FactpatchError, match="contents differ"):
        CorpusSpec.from_record(record)
    assert CorpusSpec.from_record(CorpusSpec(None, 512, 3).record()) == CorpusSpec(None, 512, 3)
