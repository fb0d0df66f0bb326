"""Instruction mix of the fused kernel's tanh loop on sm_90, read without a GPU.

    python reports/benchmarks/gpu/sass_loop.py [--kernel fwd|bwd] [--blocks 32 32 8 4]
        [--no-fp-fusion] [--dv 64] [--kernel-file PATH]

Compiles `_fwd_kernel` (or `_bwd_kernel`) of attnbench's Triton kernel, or of an earlier copy
of `triton_additive.py` (`--kernel-file`), for an H100/H200 (`GPUTarget("cuda", 90, 32)`)
with the ptxas that ships in Triton's wheel, disassembles it with Triton's `cuobjdump`, and
prints the registers, the stack, the shared memory and the instruction mix of the first loop
that evaluates `MUFU.TANH`, per tanh. The integer arguments are compiled as divisible by 16
(what Triton assumes at T = 4096). NOTES.md's v6 row quotes its numbers: 5.76 instructions per tanh
before, 3.62-3.75 after, 4.75 without FMA contraction. Needs only Triton (no CUDA driver).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from attnbench.attention.kernels import KERNEL_FILE_HINT, load_kernel_file

INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)(.*?);")


def _kernel_module(path: str | None):
    if path is None:
        from attnbench.attention.kernels import triton_additive

        return triton_additive
    return load_kernel_file(path)


def _signature(kernel, blocks: tuple[int, int, int], dv: int = 64) -> tuple[dict, dict, dict]:
    """Argument types, constexpr values and divisibility hints from the kernel's own names."""
    block_m, block_n, block_a = blocks
    values = {"HAS_MASK": True, "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_A": block_a,
              "SCORE_A": 1, "BLOCK_DV": dv, "PRECISE": False, "DOT_PRECISION": "tf32"}  # fmt: skip
    signature, constexprs, attrs = {}, {}, {}
    for index, param in enumerate(kernel.params):
        name = param.name
        if param.is_constexpr:
            signature[name] = "constexpr"
            constexprs[name] = values[name]
        elif name.endswith("_ptr"):
            signature[name] = "*i8" if name == "mask_ptr" else "*fp32"
            attrs[(index,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "i32"
            if name != "H":
                attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


def _tool(name: str) -> str:
    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def loop_mix(sass: str) -> tuple[int, int, collections.Counter]:
    """(instructions, MUFU.TANH count, opcode counts) of the first loop holding a tanh."""
    ins = [
        (int(m.group(1), 16), m.group(2), m.group(3))
        for m in (INSTRUCTION.search(line) for line in sass.splitlines())
        if m
    ]
    first = next(i for i, x in enumerate(ins) if x[1] == "MUFU.TANH")
    for j in range(first, len(ins)):
        target = re.search(r"0x([0-9a-f]+)", ins[j][2]) if ins[j][1].startswith("BRA") else None
        if target and int(target.group(1), 16) <= ins[first][0]:
            start = next(i for i, x in enumerate(ins) if x[0] == int(target.group(1), 16))
            body = ins[start : j + 1]
            tanh = sum(1 for x in body if x[1] == "MUFU.TANH")
            return len(body), tanh, collections.Counter(x[1].split(".")[0] for x in body)
    raise ValueError("no loop around the first MUFU.TANH")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", choices=("fwd", "bwd"), default="fwd")
    parser.add_argument("--blocks", type=int, nargs=4, default=[32, 32, 8, 4],
                        metavar=("BLOCK_M", "BLOCK_N", "BLOCK_A", "WARPS"))  # fmt: skip
    parser.add_argument("--no-fp-fusion", action="store_true", help="compile without FMA")
    parser.add_argument("--dv", type=int, default=64, help="BLOCK_DV: values per head, padded")
    parser.add_argument("--kernel-file", help="an earlier triton_additive.py to compile instead")
    args = parser.parse_args(argv)
    if args.kernel_file and not Path(args.kernel_file).is_file():
        parser.error(f"--kernel-file {args.kernel_file}: no such file; {KERNEL_FILE_HINT}")
    module = _kernel_module(args.kernel_file)
    kernel = getattr(module, f"_{args.kernel}_kernel")
    signature, constexprs, attrs = _signature(kernel, tuple(args.blocks[:3]), args.dv)
    options = {"num_warps": args.blocks[3], "enable_fp_fusion": not args.no_fp_fusion}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    with tempfile.TemporaryDirectory() as folder:
        cubin = Path(folder) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])

        def cuobjdump(flag: str) -> str:
            done = subprocess.run([_tool("cuobjdump"), flag, str(cubin)], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            return done.stdout

        usage = re.search(r"REG:(\d+) STACK:(\d+)", cuobjdump("--dump-resource-usage"))
        sass = cuobjdump("--dump-sass")
    total, tanh, mix = loop_mix(sass)
    print(f"_{args.kernel}_kernel, blocks {args.blocks}, FMA contraction "
          f"{'off' if args.no_fp_fusion else 'on'}: {usage.group(1)} registers, "
          f"{usage.group(2)} bytes of stack, {compiled.metadata.shared} bytes of shared memory "
          f"(BLOCK_DV {args.dv})")  # fmt: skip
    print(f"tanh loop: {total} instructions, {tanh} MUFU.TANH, {total / tanh:.2f} per tanh")
    print(" ".join(f"{op}:{count}" for op, count in mix.most_common(12)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
