"""GPU check of the fused Triton additive-attention kernel: correctness, then speed vs the limit.

    python -m attnbench.attention.kernels.gpu_check [--json PATH] [--quick]

1. forward and backward of `fused_additive_attention` (hardware tanh and `precise=True`)
   against the formula in float64, on a few shapes with padding and an all-padding row;
2. the tanh limit actually reachable: a Triton kernel that only applies `tanh.approx.f32`
   to register-resident data (elements/s);
3. fused vs materialised PyTorch formula, forward and forward+backward, B=1, H=1, a=64,
   dv=64, T_q = T_k = T in 1024, 4096, 16384 (OOM is reported, not fatal), with the tanh/s
   the fused kernel achieves and its fraction of the measured limit (NOTES.md's prediction:
   >= 50%). A forward evaluates T*T*a tanh, a backward two passes more.

Depends only on torch, triton, numpy and attnbench.attention; built to finish in ~90 s, and
to report what fails instead of stopping at it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

import numpy as np
import torch
import triton

from attnbench.attention.kernels import triton_additive as ta

#: Hopper: 16 MUFU (tanh) results per SM per clock; SM count and clock are read from the device
NOMINAL_TANH_PER_SM_CLOCK = 16
START = time.perf_counter()
BUDGET_S = 80.0  # no new sequence length is started after this (``--sweep`` adds 120 s)


def elapsed() -> float:
    return time.perf_counter() - START


def reference(qp, kp, w, values, mask):
    """The formula, materialising (B, H, T_q, T_k, a); float64 in the checks, fp32 when timed."""
    scores = (torch.tanh(qp[:, :, :, None, :] + kp[:, :, None, :, :]) * w[None, :, None, None]).sum(
        -1
    )
    if mask is None:
        return torch.softmax(scores, dim=-1) @ values
    pad = mask[:, None, None, :]
    fill = torch.finfo(scores.dtype).min
    return torch.softmax(scores.masked_fill(pad, fill), dim=-1).masked_fill(pad, 0.0) @ values


def make_inputs(batch, heads, t_q, t_k, dim, dv, pads=None, dtype=torch.float32, seed=0):
    """Scores of order 1 as in a trained model: qp, kp ~ N(0, 1), w ~ N(0, 1/a)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, device="cuda", dtype=dtype) * scale

    tensors = [
        rand(batch, heads, t_q, dim),
        rand(batch, heads, t_k, dim),
        rand(heads, dim, scale=dim**-0.5),
        rand(batch, heads, t_k, dv),
    ]
    mask = None
    if pads is not None:
        mask = torch.zeros(batch, t_k, dtype=torch.bool, device="cuda")
        for row, length in enumerate(pads):
            if length:
                mask[row, t_k - length :] = True
    return tensors, mask


def check_correctness(results: dict) -> None:
    cases = [
        # B, H, T_q, T_k, a, dv, padded keys per row (the last row of the first: all padding),
        # key splits (the last case: 4 splits of 256 keys, 3 of them all padding)
        (2, 2, 100, 130, 32, 64, [17, 130], 1),
        (1, 1, 257, 300, 64, 64, [45], 1),
        (2, 1, 64, 64, 16, 16, None, 1),
        (1, 2, 33, 1000, 40, 24, [990], 1),
        (1, 2, 33, 1000, 40, 24, [990], 4),
        # many values per head: the default blocks shrink to fit the shared memory
        # (a (128 x 64) backward with dv=256 needed 352 KB, past the H200's 227 KB)
        (2, 1, 96, 200, 256, 256, [50], 1),
        (1, 1, 40, 70, 32, 1024, None, 1),
    ]
    for precise in (True, False):
        # the exact path is checked on fewer shapes: each new shape costs compiles
        cases_here = [*cases[:2], *cases[-2:]] if precise else cases
        # exact tanh + IEEE dots: fp32 rounding only. tanh.approx (rel. err <= ~2^-10.7) and
        # TF32 dots (10-bit mantissa): errors ~1e-3 of the values' scale.
        tol = 1e-4 if precise else 2e-2
        for batch, heads, t_q, t_k, dim, dv, pads, splits in cases_here:
            row = dict(precise=precise, shape=[batch, heads, t_q, t_k, dim, dv], pads=pads,
                       key_splits=splits)  # fmt: skip
            try:
                tensors, mask = make_inputs(batch, heads, t_q, t_k, dim, dv, pads, seed=t_k)
                leaves = [t.clone().requires_grad_() for t in tensors]
                out = ta.fused_additive_attention(*leaves, mask, precise=precise, key_splits=splits)
                grad_out = torch.randn_like(out)
                out.backward(grad_out)
                ref_leaves = [t.double().requires_grad_() for t in tensors]
                ref = reference(*ref_leaves, mask)
                ref.backward(grad_out.double())
                errors = {"context": _rel_err(out, ref)}
                for name, leaf, ref_leaf in zip(
                    ["d_query_proj", "d_key_proj", "d_v", "d_values"],
                    leaves,
                    ref_leaves,
                    strict=True,
                ):
                    errors[name] = _rel_err(leaf.grad, ref_leaf.grad)
                finite = all(bool(torch.isfinite(leaf.grad).all()) for leaf in leaves)
                zero_row = True
                if pads is not None and pads[-1] == t_k:  # the all-padding row: exact zeros
                    zero_row = bool((out[-1] == 0).all()) and bool((leaves[0].grad[-1] == 0).all())
                row.update(errors=errors, finite=finite, all_pad_row_zero=zero_row)
                row["ok"] = finite and zero_row and max(errors.values()) <= tol
            except Exception as exc:  # report and go on
                row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
                traceback.print_exc()
            results["correctness"].append(row)
            errs = row.get("errors", {})
            worst = max(errs.values()) if errs else float("nan")
            print(
                f"  {'precise' if precise else 'approx '} {row['shape']} pads={pads} "
                f"splits={splits}: "
                f"max rel err {worst:.2e} (tol {tol:g}) -> {'OK' if row['ok'] else 'FAIL'}"
                + (f" [{row['error']}]" if "error" in row else ""),
                flush=True,
            )


def check_module_dispatch(results: dict) -> None:
    """AdditiveAttention(need_weights=False) on CUDA goes through the fused kernel, same result."""
    from attnbench.attention import additive
    from attnbench.attention.additive import AdditiveAttention

    row = dict(check="AdditiveAttention need_weights=False vs True, H=2, CUDA")
    try:
        torch.manual_seed(0)
        module = AdditiveAttention(48, 40, attn_dim=64, num_heads=2).cuda()
        query = torch.randn(3, 50, 48, device="cuda")
        keys = torch.randn(3, 70, 40, device="cuda")
        values = torch.randn(3, 70, 32, device="cuda")
        mask = torch.zeros(3, 70, dtype=torch.bool, device="cuda")
        mask[0, 50:] = True
        mask[2, :] = True
        calls = []
        original = ta.fused_additive_attention

        def spy(*args, **kwargs):
            calls.append(kwargs.get("precise"))
            return original(*args, **kwargs)

        ta.fused_additive_attention = spy
        try:
            with additive.cuda_kernel_from(0):  # this small shape takes the kernel
                context, none = module(query, keys, values, mask, need_weights=False)
        finally:
            ta.fused_additive_attention = original
        expected, _ = module(query, keys, values, mask)
        grads = torch.autograd.grad(context.sum(), list(module.parameters()))
        ref_grads = torch.autograd.grad(expected.sum(), list(module.parameters()))
        errors = {"context": _rel_err(context, expected.double())}
        for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
            errors[f"param{i}"] = _rel_err(g, r.double())
        row.update(errors=errors, fused_calls=len(calls), weights_is_none=none is None,
                   precise=calls)  # fmt: skip
        # float32 inputs must take the precise mode (exact tanh, IEEE dots): float32 errors
        row["ok"] = calls == [True] and none is None and max(errors.values()) <= 1e-4
    except Exception as exc:
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    results["correctness"].append(row)
    print(
        f"  {row['check']}: {row.get('errors', row.get('error'))} -> "
        f"{'OK' if row['ok'] else 'FAIL'}",
        flush=True,
    )


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|: the error on the scale of the values themselves."""
    scale = want.abs().max().item() or 1.0
    return (got.double() - want).abs().max().item() / scale


def measure_tanh_limit(results: dict) -> float:
    """The tanh.approx loop the benchmark uses too (`tanh_limit.tanh_rate`): one limit, one way."""
    from attnbench.attention.kernels.tanh_limit import tanh_rate

    rate = tanh_rate()
    results["tanh_limit"] = dict(tanh_per_s=rate)
    print(f"  measured tanh.approx limit: {rate:.3e} tanh/s", flush=True)
    return rate


def _bench(fn, rep_ms=100) -> float:
    """Mean ms of fn() after warm-up; NaN (with the reason printed) if it fails or OOMs."""
    try:
        fn()
        torch.cuda.synchronize()
        return float(triton.testing.do_bench(fn, warmup=10, rep=rep_ms))
    except torch.cuda.OutOfMemoryError:
        print("    (out of memory)", flush=True)
    except Exception as exc:
        print(f"    ({type(exc).__name__}: {str(exc)[:200]})", flush=True)
    finally:
        torch.cuda.empty_cache()
    return float("nan")


def time_kernels(results: dict, limit: float, lengths, configs) -> None:
    for index, length in enumerate(lengths):
        if index and elapsed() > BUDGET_S:
            print(f"  skipping T={length}: time budget spent", flush=True)
            break
        _time_length(results, limit, length, configs)
        torch.cuda.empty_cache()


def _time_length(results: dict, limit: float, length: int, configs) -> None:
    total_memory = torch.cuda.get_device_properties(0).total_memory
    dim = dv = 64
    tensors, _ = make_inputs(1, 1, length, length, dim, dv, seed=length)
    leaves = [t.clone().requires_grad_() for t in tensors]
    grad_out = torch.randn(1, 1, length, dv, device="cuda")
    tanh_fwd = float(length) * length * dim

    def fwd_bwd(fn):
        def run():
            for leaf in leaves:
                leaf.grad = None
            fn(*leaves, None).backward(grad_out)

        return run

    impls = {}
    for name, kwargs in configs.items():
        fused = _bind(kwargs)
        impls[name] = (lambda f=fused: f(*tensors, None), fwd_bwd(fused))
    # the materialised formula holds T*T*a*4-byte tensors (2 in the forward, ~4 with autograd):
    # skip what cannot fit rather than wait for the allocator to fail
    impls["torch reference"] = (
        (lambda: reference(*tensors, None)) if 2.5 * tanh_fwd * 4 < total_memory else None,
        fwd_bwd(reference) if 4.5 * tanh_fwd * 4 < total_memory else None,
    )
    for name, (fwd, both) in impls.items():
        if fwd is None or both is None:
            print(f"    {name}: skipped where T*T*a tensors exceed the GPU's memory", flush=True)
        fwd_ms = _bench(fwd) if fwd is not None else float("nan")
        both_ms = _bench(both) if both is not None else float("nan")
        row = dict(T=length, impl=name, fwd_ms=fwd_ms, fwd_bwd_ms=both_ms)
        row["fwd_tanh_per_s"] = tanh_fwd / (fwd_ms * 1e-3)
        row["fwd_bwd_tanh_per_s"] = 3 * tanh_fwd / (both_ms * 1e-3)
        row["fwd_fraction_of_limit"] = row["fwd_tanh_per_s"] / limit
        row["fwd_bwd_fraction_of_limit"] = row["fwd_bwd_tanh_per_s"] / limit
        results["timing"].append(row)
        print(
            f"  T={length:>6} {name:<22} fwd {fwd_ms:9.3f} ms  fwd+bwd {both_ms:9.3f} ms  "
            f"fwd {row['fwd_tanh_per_s']:.2e} tanh/s = {row['fwd_fraction_of_limit']:6.1%}"
            f"  fwd+bwd {row['fwd_bwd_fraction_of_limit']:6.1%} of limit",
            flush=True,
        )


def _bind(kwargs):
    def fused(qp, kp, w, v, mask):
        return ta.fused_additive_attention(qp, kp, w, v, mask, **kwargs)

    return fused


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="T in 1024, 4096 only")
    parser.add_argument("--lengths", type=int, nargs="+", help="sequence lengths T to time")
    parser.add_argument(
        "--sweep", action="store_true", help="also time other block sizes (adds ~60 s)"
    )
    parser.add_argument(
        "--check-only", action="store_true", help="correctness only: no limit, no timing"
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("CUDA is not available: this check needs a GPU", file=sys.stderr)
        return 2
    props = torch.cuda.get_device_properties(0)
    clock_ghz = _clock_ghz()
    nominal = NOMINAL_TANH_PER_SM_CLOCK * props.multi_processor_count * clock_ghz * 1e9
    results = dict(
        device=props.name,
        sms=props.multi_processor_count,
        clock_ghz=clock_ghz,
        nominal_tanh_per_s=nominal,
        torch=torch.__version__,
        triton=triton.__version__,
        numpy=np.__version__,
        python=sys.version.split()[0],
        correctness=[],
        timing=[],
    )
    print(
        f"{props.name}, {props.multi_processor_count} SMs, ~{clock_ghz:.2f} GHz; torch "
        f"{torch.__version__}, triton {triton.__version__}; nominal tanh limit {nominal:.2e}/s",
        flush=True,
    )
    print("correctness (fp32 kernel vs float64 formula):", flush=True)
    check_correctness(results)
    check_module_dispatch(results)
    if args.check_only:
        return _finish(results, args.json)
    print("tanh limit:", flush=True)
    try:
        limit = measure_tanh_limit(results)
    except Exception:
        traceback.print_exc()
        limit = nominal
    # v7 picks key splits per call (`auto_key_splits`); "no key splits" is v6's forward, so
    # each run times the rule against what it replaced
    configs = {"fused (defaults)": {}, "fused precise": dict(precise=True),
               "fused, no key splits": dict(key_splits=1)}  # fmt: skip
    if args.sweep:  # forward tile, a-step, warps (v6: those without spills); backward tile
        for fwd in ((32, 64, 4, 4), (64, 32, 4, 4), (16, 32, 8, 2), (16, 64, 8, 4)):
            name = "fwd {}x{} a{} w{}".format(*fwd)
            configs[name] = dict(block_m=fwd[0], block_n=fwd[1], block_a=fwd[2], num_warps=fwd[3])
        for bwd in ((128, 32, 4), (256, 64, 8)):
            name = "bwd {}x{} w{}".format(*bwd)
            configs[name] = dict(backward_blocks=bwd[:2], num_warps_backward=bwd[2])
        for splits in (2, 4):  # v5: more programs at small T (NOTES.md)
            configs[f"fwd key splits {splits}"] = dict(key_splits=splits)
            configs[f"fwd 16x32 a8 w2 key splits {splits}"] = dict(
                block_m=16, block_n=32, block_a=8, num_warps=2, key_splits=splits
            )
    print("timing (B=1, H=1, a=64, dv=64; mean ms, triton.testing.do_bench):", flush=True)
    lengths = [1024, 4096] if args.quick else [1024, 4096, 16384]
    lengths = args.lengths or lengths
    if args.sweep:
        global BUDGET_S
        BUDGET_S += 120.0
    time_kernels(results, limit, lengths, configs)
    return _finish(results, args.json)


def _finish(results: dict, json_path: str | None) -> int:
    """Print the verdict, write the JSON file if asked; exit code 0 when every check held."""
    ok = all(row["ok"] for row in results["correctness"])
    results["correct"] = ok
    results["seconds"] = elapsed()
    print(f"correctness: {'all OK' if ok else 'FAILURES'}; {elapsed():.0f} s", flush=True)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, default=_jsonable)
    return 0 if ok else 1


def _clock_ghz() -> float:
    """The SM clock: max from NVML where it answers, else the H100/H200 boost of ~1.98 GHz."""
    try:
        rate = torch.cuda.clock_rate()  # MHz via NVML, current clock
        if rate and rate > 500:
            return max(rate / 1000.0, 1.0)
    except Exception:
        pass
    return 1.98


def _jsonable(value):
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
