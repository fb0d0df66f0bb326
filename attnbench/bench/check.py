"""Equality with the reference before timing: a fast wrong kernel must not enter the table.

Each implementation runs on fresh random inputs of a small, deliberately odd shape (lengths that
are not multiples of any tile) with the padding mask, and is compared with its family's
reference (the materialised additive or the plain matmul+softmax formula) in float64 on the
CPU. In the backward mode the input gradients are compared too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from attnbench.bench.implementations import BASELINES, REGISTRY, Implementation
from attnbench.bench.problem import Problem, Shape, make_problem

CHECK_SHAPE = Shape(batch=2, heads=2, length_q=37, length_k=53, dim=16, value_dim=16)
#: (atol, rtol) per dtype for the context; gradients get 10x
TOLERANCE = {torch.float32: (2e-4, 1e-3), torch.bfloat16: (5e-2, 5e-2), torch.float16: (1e-2, 1e-2)}


def _outputs(fn: Any, problem: Problem, mode: str) -> list[Tensor]:
    """The context, and in the backward mode the gradients of every input, as float64."""
    if mode == "forward":
        with torch.no_grad():
            return [fn(problem).double().cpu()]
    problem.requires_grad_()
    context = fn(problem)
    grad_out = torch.linspace(-1, 1, context.numel(), dtype=context.dtype, device=context.device)
    context.backward(grad_out.view_as(context))
    return [context.detach().double().cpu()] + [t.grad.double().cpu() for t in problem.tensors()]


def check(impl: Implementation, device: str, dtype: torch.dtype, mode: str, seed: int = 1):
    """Returns (ok, max_abs_error, detail). Exceptions in the implementation count as failures."""
    problem = make_problem(CHECK_SHAPE, impl.family, device, dtype, seed)
    reference = make_problem(CHECK_SHAPE, impl.family, "cpu", torch.float64, seed)
    if not impl.masked:
        problem = replace(problem, mask=torch.zeros_like(problem.mask))
        reference = replace(reference, mask=torch.zeros_like(reference.mask))
    ref_fn = REGISTRY[BASELINES[impl.family]].build(CHECK_SHAPE)
    expected = _outputs(ref_fn, reference, mode)
    try:
        got = _outputs(impl.build(CHECK_SHAPE), problem, mode)
    except Exception as exc:
        return False, None, f"raised {type(exc).__name__}: {exc}".splitlines()[0][:200]
    atol, rtol = TOLERANCE[dtype]
    worst, ok = 0.0, True
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        scale = 1 if i == 0 else 10
        if g.shape != e.shape:
            return False, None, f"shape {tuple(g.shape)} != reference {tuple(e.shape)}"
        err = (g - e).abs()
        worst = max(worst, float(err.max()))
        ok &= bool(torch.all(err <= scale * (atol + rtol * e.abs())))
    return ok, worst, "" if ok else f"max |error| {worst:.3g} over tolerance atol={atol}"
