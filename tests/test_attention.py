"""Every registered variant against its paper's formula, in float64, with masks."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from attnbench.attention import ATTENTION, AdditiveAttention, build_attention
from attnbench.errors import UserError

B, T_Q, T_K, D = 3, 4, 6, 8


def reference_score(att, q: torch.Tensor, k: torch.Tensor, head: int) -> float:
    """The paper's scalar score of one query vector against one key vector, for one head."""
    name, heads = att.name, att.num_heads
    if name == "additive":
        a = att.attn_dim // heads
        sl = slice(head * a, (head + 1) * a)
        wq = att.query_proj.weight[sl] @ q
        uk = att.key_proj.weight[sl] @ k + att.key_proj.bias[sl]
        return float(att.v.weight[0, sl] @ torch.tanh(wq + uk))
    if att.attn_dim is not None:  # Britz: both sides projected to A
        q, k = att.query_proj.weight @ q, att.key_proj.weight @ k
    elif name == "general":
        k = att.key_proj.weight @ k
    d = q.shape[0] // heads
    sl = slice(head * d, (head + 1) * d)
    s = float(q[sl] @ k[sl])
    return s / math.sqrt(d) if name == "scaled_dot" else s


@torch.no_grad()
def reference_attention(att, query, keys, values, mask):
    """Loop over batch, heads, queries and keys: slow, obvious, independent of the module."""
    heads = att.num_heads
    dv = values.shape[-1] // heads
    context = torch.zeros(query.shape[0], query.shape[1], values.shape[-1], dtype=torch.float64)
    weights = torch.zeros(query.shape[0], query.shape[1], keys.shape[1], dtype=torch.float64)
    for b in range(query.shape[0]):
        valid = [j for j in range(keys.shape[1]) if not mask[b, j]]
        for i in range(query.shape[1]):
            for h in range(heads):
                if not valid:
                    continue
                s = torch.tensor(
                    [reference_score(att, query[b, i], keys[b, j], h) for j in valid],
                    dtype=torch.float64,
                )
                p = torch.exp(s - s.max())
                p = p / p.sum()
                for w, j in zip(p, valid, strict=True):
                    context[b, i, h * dv : (h + 1) * dv] += w * values[b, j, h * dv : (h + 1) * dv]
                    weights[b, i, j] += w / heads
    return context, weights


def random_inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(B, T_Q, D, generator=gen, dtype=torch.float64)
    keys = torch.randn(B, T_K, D, generator=gen, dtype=torch.float64)
    values = torch.randn(B, T_K, 6, generator=gen, dtype=torch.float64)
    mask = torch.zeros(B, T_K, dtype=torch.bool)
    mask[0, 4:] = True  # ragged padding
    mask[1, :] = True  # a row of all padding
    return query, keys, values, mask


CASES = [
    (name, heads, attn_dim)
    for name in sorted(ATTENTION)
    for heads in (1, 2)
    for attn_dim in ((None, 4) if name != "dot" else (None,))
]


def make(name: str, heads: int, attn_dim: int | None, **options):
    torch.manual_seed(0)
    att = build_attention(name, D, D, attn_dim=attn_dim, num_heads=heads, **options).double()
    with torch.no_grad():  # nonzero bias so the reference really checks it
        for p in att.parameters():
            p.normal_()
    return att


#: the masks a call may get: padding of different lengths (one row all padding), a mask with
#: nothing masked, and no mask at all (its own code path: SDPA without attn_mask)
MASKS = ["ragged", "nothing masked", "no mask"]


def pick_mask(kind: str, ragged: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """-> (the mask to pass the module, the mask the reference loops over)."""
    nothing = torch.zeros_like(ragged)
    return {"ragged": (ragged, ragged), "nothing masked": (nothing, nothing),
            "no mask": (None, nothing)}[kind]  # fmt: skip


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize(("name", "heads", "attn_dim"), CASES)
def test_matches_formula_in_float64(name, heads, attn_dim, mask_kind):
    att = make(name, heads, attn_dim)
    seed = zlib.crc32(f"{name}/{heads}/{attn_dim}".encode()) % 1000  # the same in every run
    query, keys, values, ragged = random_inputs(seed=seed)
    mask, ref_mask = pick_mask(mask_kind, ragged)
    context, weights = att(query, keys, values, key_padding_mask=mask)
    ref_context, ref_weights = reference_attention(att, query, keys, values, ref_mask)
    assert context.shape == (B, T_Q, 6) and weights.shape == (B, T_Q, T_K)
    rel = (context - ref_context).norm() / ref_context.norm()
    assert rel < 1e-10
    assert (weights - ref_weights).norm() / ref_weights.norm() < 1e-10


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_weights_sum_to_one_over_unmasked_and_zero_on_masked(name):
    att = make(name, 1, None)
    query, keys, values, mask = random_inputs(seed=7)
    context, weights = att(query, keys, values, key_padding_mask=mask)
    assert torch.all(weights[mask[:, None, :].expand_as(weights)] == 0)
    sums = weights.sum(-1)
    assert torch.allclose(sums[0], torch.ones(T_Q, dtype=torch.float64))
    assert torch.allclose(sums[2], torch.ones(T_Q, dtype=torch.float64))
    # all-padding row: zero weights and zero context, no NaN anywhere
    assert torch.all(weights[1] == 0) and torch.all(context[1] == 0)
    assert not torch.isnan(context).any()


@pytest.mark.parametrize(("name", "heads", "attn_dim"), CASES)
def test_gradients_reach_every_parameter_and_stay_finite(name, heads, attn_dim):
    att = make(name, heads, attn_dim)
    query, keys, values, mask = random_inputs(seed=3)
    query.requires_grad_(True)
    context, _ = att(query, keys, values, key_padding_mask=mask)
    context.pow(2).sum().backward()
    for pname, p in att.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    assert torch.isfinite(query.grad).all()
    assert torch.all(query.grad[1] == 0)  # the all-padding row does not depend on its query


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize(("name", "heads", "attn_dim"), CASES)
def test_gradients_match_finite_differences(name, heads, attn_dim, need_weights):
    """Autograd's gradients of the context, w.r.t. every input and parameter, against central
    differences in float64, with ragged and all-padding rows: the formula tests check the
    forward pass only, and a rewritten score (e.g. another product for v_a) must keep both."""
    att = make(name, heads, attn_dim)
    query, keys, values, mask = random_inputs(seed=5)
    names = [pname for pname, _ in att.named_parameters()]

    def context(q, k, v, *params):
        options = {"key_padding_mask": mask, "need_weights": need_weights}
        weights = dict(zip(names, params, strict=True))
        out, _ = torch.func.functional_call(att, weights, (q, k, v), options)
        return out

    inputs = [t.detach().clone().requires_grad_() for t in (query, keys, values)]
    inputs += [p.detach().clone().requires_grad_() for p in att.parameters()]
    assert torch.autograd.gradcheck(context, inputs, eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize(("name", "heads", "attn_dim"), CASES)
def test_without_weights_the_formula_and_its_gradients_hold(name, heads, attn_dim, mask_kind):
    """need_weights=False is what training calls (fused SDPA for the dot-product family):
    same context as the formula, same gradients as the weights path, an all-padding row
    still zero and its gradients finite."""
    att = make(name, heads, attn_dim)
    query, keys, values, ragged = random_inputs(seed=11)
    mask, ref_mask = pick_mask(mask_kind, ragged)
    query.requires_grad_(True)
    context, none = att(query, keys, values, key_padding_mask=mask, need_weights=False)
    assert none is None
    ref_context, _ = reference_attention(att, query.detach(), keys, values, ref_mask)
    assert (context - ref_context).norm() / ref_context.norm() < 1e-10
    inputs = [query, *att.parameters()]
    grads = torch.autograd.grad(context.pow(2).sum(), inputs)
    with_weights, _ = att(query, keys, values, key_padding_mask=mask)
    expected = torch.autograd.grad(with_weights.pow(2).sum(), inputs)
    for got, want in zip(grads, expected, strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if mask_kind == "ragged":
        assert torch.all(context[1] == 0) and torch.all(grads[0][1] == 0)


@pytest.mark.parametrize("chunk", [1, 4, 5, 64])
@pytest.mark.parametrize("heads", [1, 2])
def test_additive_chunked_equals_unchunked(chunk, heads):
    query, keys, values, mask = random_inputs(seed=11)
    full = make("additive", heads, None)
    chunked = make("additive", heads, None, chunk_size=chunk)
    c1, w1 = full(query, keys, values, key_padding_mask=mask)
    c2, w2 = chunked(query, keys, values, key_padding_mask=mask)
    assert torch.allclose(c1, c2, rtol=1e-12, atol=1e-14)
    assert torch.allclose(w1, w2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_prepared_keys_give_the_same_result(name):
    att = make(name, 1, None)
    query, keys, values, mask = random_inputs(seed=5)
    direct = att(query, keys, values, key_padding_mask=mask)
    prepared = att(query, keys, values, key_padding_mask=mask, prepared_keys=att.prepare_keys(keys))
    assert torch.equal(direct[0], prepared[0])


def test_parameter_names_follow_the_papers():
    add = build_attention("additive", 5, 7, attn_dim=3)
    assert isinstance(add, AdditiveAttention)
    assert add.query_proj.weight.shape == (3, 5) and add.query_proj.bias is None
    assert add.key_proj.weight.shape == (3, 7) and add.key_proj.bias is not None
    assert add.v.weight.shape == (1, 3) and add.v.bias is None
    assert build_attention("additive", 5, 7).attn_dim == 5  # A defaults to D_q
    gen = build_attention("general", 5, 7)
    assert gen.key_proj.weight.shape == (5, 7) and gen.key_proj.bias is None
    assert gen.query_proj is None
    assert list(build_attention("dot", 4, 4).parameters()) == []
    assert list(build_attention("scaled_dot", 4, 4).parameters()) == []


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UserError, match="additive, dot, general, scaled_dot"):
        build_attention("multiplicative", 4, 4)


@pytest.mark.parametrize("name", ["dot", "scaled_dot"])
def test_dot_needs_equal_dims(name):
    with pytest.raises(UserError, match="query_dim == key_dim"):
        build_attention(name, 4, 6)


def test_heads_must_divide_the_scoring_dim():
    with pytest.raises(UserError, match="divisible"):
        build_attention("additive", 6, 6, num_heads=4)
