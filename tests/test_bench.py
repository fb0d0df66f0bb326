"""The attention benchmark (attnbench.bench): rows, equality check, OOM, budget, tables,
targets, CLI and import hygiene. Nothing here asserts a speed: only structure and behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnbench.bench import limits as limits_mod
from attnbench.bench import runner
from attnbench.bench.cell import run_cell_in_child
from attnbench.bench.full_model import KEY_PROJECTION_CELLS
from attnbench.bench.grid import Cell, default_spec, parse_ints
from attnbench.bench.implementations import REGISTRY, Implementation
from attnbench.bench.tables import lra_frame, lra_table
from attnbench.bench.targets import evaluate
from attnbench.errors import UserError
from tests._cli import run_cli

FAKE_LIMITS = [
    {"limit": "tanh", "method": "fake", "dtype": "float32", "unit": "tanh/s", "rate": 1e9,
     "source": "measured", "note": ""},
    {"limit": "matmul", "method": "fake", "dtype": "float32", "unit": "FLOP/s", "rate": 1e10,
     "source": "measured", "note": ""},
]  # fmt: skip


@pytest.fixture
def fast_limits(monkeypatch):
    monkeypatch.setattr(
        limits_mod,
        "measure_limits",
        lambda device, dtype, when="start", max_trial_s=None: [
            {**r, "when": when} for r in FAKE_LIMITS
        ],
    )


def tiny_spec_and_options(names, lengths=(16, 32), modes=("forward", "backward"),
                          max_seconds=60.0):  # fmt: skip
    spec = default_spec("cpu", lengths=list(lengths), dims=[8], names=list(names),
                        modes=list(modes))  # fmt: skip
    opts = runner.RunOptions(repeats=2, cell_seconds=0.05, max_seconds=max_seconds,
                             isolation="inline", log=lambda line: None)  # fmt: skip
    return spec, opts


def tiny(names, lengths=(16, 32), modes=("forward", "backward"), max_seconds=60.0):
    return runner.run_benchmark(*tiny_spec_and_options(names, lengths, modes, max_seconds))


def test_tiny_grid_gives_well_formed_rows(fast_limits):
    names = ["materialised", "chunked", "cpu_fast", "matmul_softmax", "sdpa"]
    result = tiny(names)
    rows = pd.DataFrame(result.rows)
    # cpu_fast is forward only: 5 x 2 forward + 4 x 2 backward
    assert len(rows) == 18 and set(rows["status"]) == {"ok"}
    assert set(rows["implementation"]) == set(names)
    assert (rows["seconds_median"] > 0).all() and (rows["repeats"] >= 2).all()
    assert (rows["tokens_per_s"] == rows["batch"] * rows["length"] / rows["seconds_median"]).all()
    assert set(rows["work_unit"]) == {"tanh", "flop"}
    limit = rows["work_unit"].map({"tanh": 1e9, "flop": 1e10})
    assert (rows["fraction_of_limit"] - rows["work_per_s"] / limit).abs().max() < 1e-12
    assert (rows["max_abs_error"] < 1e-4).all()
    # forward cells first (longest lengths first), backward last
    assert list(rows["mode"]).index("backward") == 10
    assert rows["length"].iloc[0] == 32


@pytest.mark.slow  # Inductor compiles the fused scores' forward and backward
def test_the_fused_cpu_scores_are_checked_and_timed_both_ways(fast_limits):
    """The training path's implementation matches the float64 reference forward and
    backward (the runner checks it, with a padding mask, before timing it)."""
    rows = pd.DataFrame(tiny(["materialised", "fused_scores"], lengths=(24,)).rows)
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}
    fused = rows[rows["implementation"] == "fused_scores"]
    assert sorted(fused["mode"]) == ["backward", "forward"]
    assert (fused["max_abs_error"] < 1e-4).all()


def test_a_child_process_measures_peak_rss():
    cell = Cell("forward", "materialised", 256, 1, 1, 64, "float32", "cpu")
    row = run_cell_in_child(cell, warmup=1, repeats=2, max_seconds=1.0, timeout_s=120)
    assert row["status"] == "ok"
    assert "fresh child" in row["memory_method"]
    # the (1, 1, 256, 256, 64) float32 tanh tensor alone is 16 MiB
    assert row["peak_memory_mb"] >= 16 and row["total_peak_memory_mb"] > row["peak_memory_mb"]


def test_a_child_past_its_timeout_is_killed_and_the_row_says_so():
    import multiprocessing

    cell = Cell("forward", "materialised", 1024, 1, 1, 64, "float32", "cpu")
    row = run_cell_in_child(cell, warmup=1, repeats=1000, max_seconds=60.0, timeout_s=0.5)
    assert row["status"] == "timeout after 0 s" and row["implementation"] == "materialised"
    assert not multiprocessing.active_children()  # killed and reaped, nothing left running


def _register(monkeypatch, name, build, family="additive"):
    impl = Implementation(name, family, build, frozenset({"cpu"}))
    monkeypatch.setitem(REGISTRY, name, impl)


def test_a_wrong_implementation_is_caught_and_not_timed(monkeypatch, fast_limits):
    def build(shape):
        reference = REGISTRY["materialised"].build(shape)
        return lambda p: reference(p) * 1.01

    _register(monkeypatch, "wrong", build)
    rows = tiny(["wrong"], modes=("forward",)).rows
    assert [r["status"] for r in rows] == ["mismatch", "mismatch"]
    assert all("seconds_median" not in r for r in rows)
    assert "over tolerance" in rows[0]["note"]


def test_out_of_memory_is_a_recorded_result(monkeypatch, fast_limits):
    def build(shape):
        reference = REGISTRY["materialised"].build(shape)
        if shape.length_q < 64:  # the small equality check passes
            return reference

        def run(p):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

        return run

    _register(monkeypatch, "hungry", build)
    rows = tiny(["hungry"], lengths=(64, 128, 256), modes=("forward",)).rows
    by_length = {r["length"]: r["status"] for r in rows}  # order: 256 (headline), 64, 128
    assert by_length[256] == "out of memory" and by_length[64] == "out of memory"
    assert by_length[128] == "skipped: out of memory at length 64"


def test_time_budget_skips_cells(fast_limits):
    rows = tiny(["chunked", "sdpa"], modes=("forward", "model"), max_seconds=0).rows
    assert {r["status"] for r in rows} == {"skipped: time budget"}
    assert len(rows) == 5  # 2 x 2 attention cells + one model row


def _row(impl, length, tps, status="ok", mem=10.0, mode="forward", work_per_s=None):
    family = REGISTRY[impl].family
    return {"mode": mode, "implementation": impl, "family": family, "length": length,
            "batch": 1, "dim": 64, "dtype": "float32", "device": "cpu", "status": status,
            "tokens_per_s": tps if status == "ok" else None,
            "seconds_median": length / tps if status == "ok" else None,
            "work_per_s": work_per_s,
            "peak_memory_mb": mem if status == "ok" else None}  # fmt: skip


def test_lra_table_shape_and_speedups():
    rows = [
        _row("materialised", 64, 100.0), _row("materialised", 4096, 10.0, mem=8000),
        _row("chunked", 64, 50.0), _row("chunked", 4096, 20.0, mem=300),
        _row("sdpa", 64, 1000.0), _row("sdpa", 4096, status="out of memory", tps=None),
        _row("matmul_softmax", 64, 500.0), _row("matmul_softmax", 4096, 40.0),
        _row("chunked", 64, 1.0, mode="backward"),
    ]  # fmt: skip
    frame = lra_frame(rows)
    speedup = frame.set_index(["implementation", "length"])["speedup"]
    assert speedup["chunked", 64] == pytest.approx(0.5)
    assert speedup["chunked", 4096] == pytest.approx(2.0)
    assert speedup["sdpa", 64] == pytest.approx(2.0)
    assert pd.isna(speedup["sdpa", 4096])
    table = lra_table(frame)
    assert list(table.index) == ["materialised", "chunked", "matmul_softmax", "sdpa"]
    assert list(table.columns) == ["T=64", "T=4096"]
    assert table.loc["chunked", "T=4096"] == "20 (2.00x), 300 MB"
    assert table.loc["sdpa", "T=4096"] == "OOM"


def test_cpu_targets_use_the_measured_values():
    rows = [
        _row("materialised", 4096, 10.0, mem=8000),
        _row("chunked", 4096, 9.0, mem=500),
        _row("cpu_fast", 4096, 100.0, work_per_s=4e8),
        _row("sdpa", 4096, 1000.0, work_per_s=4e9),
        *[{"mode": "train_step", "implementation": "keys_once", "comparison": "key_projection",
           "status": "ok", "dim": 512, "batch": 16, "src_len": s, "tgt_len": t, "speedup": x}
          for s, t, x in ((64, 64, 2.5), (128, 128, 1.9), (80, 20, 1.6))],
        {"mode": "train_step", "implementation": "keys_once", "comparison": "key_projection",
         "status": "out of memory", "dim": 512, "batch": 16, "src_len": 256, "tgt_len": 256},
    ]  # fmt: skip
    evaluated = evaluate(rows, FAKE_LIMITS, "cpu")
    targets = {t.name.split(":")[0]: t for t in evaluated}
    chunked = targets["chunked additive"]
    assert chunked.passed is True and "memory ratio 0.062" in chunked.measured
    assert targets["fastest additive path"].passed is True  # 4e8 / 1e9 = 40% >= 30%
    assert "40.0%" in targets["fastest additive path"].measured
    assert targets["sdpa"].passed is False  # 4e9 / 1e10 = 40% < 50%
    key_projection = [t for t in evaluated if "key projection" in t.name]
    # one target per cell with source as long as target; the 80 / 20 cell is not one
    assert [(t.name.split("S=T=")[1], t.measured, t.passed) for t in key_projection] == [
        ("64, B=16)", "2.50x", True),
        ("128, B=16)", "1.90x", False),
        ("256, B=16)", "not measured: out of memory", None),
    ]
    without = evaluate(rows[:4], FAKE_LIMITS, "cpu")
    assert [t.passed for t in without if "key projection" in t.name] == [None]


def test_parse_lengths():
    assert parse_ints("256,64, 64", "--lengths") == [64, 256]
    for bad in ("", "a,b", "64,-1", "0"):
        with pytest.raises(UserError, match="--lengths must be comma-separated"):
            parse_ints(bad, "--lengths")


def test_bench_help(monkeypatch, capsys):
    code, out, _ = run_cli(["bench", "--help"], monkeypatch, capsys)
    assert code == 0 and "--lengths" in out and "--device" in out and "--dtype" in out


def test_bad_lengths_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["bench", "--lengths", "64,abc"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("attnbench: error: --lengths must be comma-separated")
    assert not (tmp_path / "attnbench-runs").exists()


BLOCKED = "pydantic", "mlflow", "prefect", "optuna"


@pytest.mark.slow
def test_standalone_runner_needs_no_pydantic_mlflow_or_prefect(tmp_path):
    """The GPU machine has none of them: import and run `python -m attnbench.bench` with them
    blocked, and check its files."""
    # the full-model cells shrunk in place (same count): the rows are what is checked here,
    # and at the real sizes (hidden 512, up to 128 tokens) they took ~40 s on a slow host
    shrink = (
        "import attnbench.bench.full_model as fm\n"
        "fm.MODEL_CELLS[:] = [('additive', 2, 6, 5, 16), ('scaled_dot', 2, 6, 5, 16)]\n"
        "fm.KEY_PROJECTION_CELLS[:] = [(2, 6, 6), (2, 8, 8), (2, 8, 4)]\n"
    )
    script = (
        "import sys, runpy\n"
        f"for name in {BLOCKED!r}:\n    sys.modules[name] = None\n"
        + shrink
        + f"sys.argv = ['attnbench.bench', '--device', 'cpu', '--out', {str(tmp_path)!r},\n"
        "    '--lengths', '16', '--dims', '8', '--implementations', 'chunked,sdpa',\n"
        "    '--modes', 'forward,model', '--isolation', 'inline', '--cell-seconds', '0.05',\n"
        "    '--repeats', '1', '--comparison-repeats', '1']\n"
        "runpy.run_module('attnbench.bench', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "### Limits measured in this run" in done.stdout
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    assert set(rows[rows["mode"] == "forward"]["status"]) == {"ok"}
    model = rows[rows["mode"].isin(["train_step", "greedy_decode"])]
    # per cell: a training step, decoding, fused vs reference path; then the key projection
    # once and per step at each of its cells
    assert len(model) == 2 * 4 + 2 * len(KEY_PROJECTION_CELLS) and set(model["status"]) == {"ok"}
    assert set(model["repeats"]) == {1}  # --repeats and --comparison-repeats reach them
    assert set(model["comparison"].dropna()) == {"fused_path", "key_projection"}
    assert (model["tokens_per_s"] > 0).all()
    assert (tmp_path / "forward.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "| implementation | T=16 |" in report and "### Targets" in report
    assert "measured again at the end of the run" in report or "speed moved" in report
    limits = pd.read_parquet(tmp_path / "limits.parquet")
    measured = limits[limits["source"] == "measured"]
    assert sorted(set(measured["when"])) == ["end", "start"]
    # every candidate ran, the compiled rational tanh and NumPy's GEMM included
    rates = measured[measured["when"] == "start"].set_index("method")["rate"]
    assert (rates > 0).all() and len(rates) == 6, rates
    for method in ("rational tanh, torch.compile", "np.matmul"):
        assert any(m.startswith(method) for m in rates.index), rates
    assert len(measured[measured["when"] == "end"]) == len(measured[measured["when"] == "start"])
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["command"].startswith("python -m attnbench.bench")


def test_standalone_bad_lengths_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "attnbench.bench", "--out", "x", "--lengths", "1,x"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--lengths must be comma-separated" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option", ["--repeats", "--comparison-repeats"])
def test_standalone_repeats_below_one_exit_2(option, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "attnbench.bench", "--out", "x", option, "0"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"{option} must be at least 1, got 0" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("name", "family"), [("materialised", "additive"),
                                               ("matmul_softmax", "multiplicative")])  # fmt: skip
def test_the_plain_implementations_stay_plain(monkeypatch, name, family):
    """The modules' need_weights=False path dispatches to fused kernels (SDPA, the CPU/Triton
    additive kernels); the plain rows must not, or the table compares a kernel with itself."""
    import torch.nn.functional as F

    from attnbench.attention import additive
    from attnbench.attention.kernels import cpu_additive, cpu_scores
    from attnbench.bench.problem import Shape, make_problem

    def fused(*args, **kwargs):
        raise AssertionError("a plain implementation called a fused kernel")

    monkeypatch.setattr(F, "scaled_dot_product_attention", fused)
    monkeypatch.setattr(cpu_additive, "additive_attention_cpu", fused)
    monkeypatch.setattr(cpu_scores, "fused_additive_scores", fused)
    monkeypatch.setattr(additive, "CPU_KERNEL_BACKEND", "inductor")  # where the module would
    monkeypatch.setattr(additive, "CPU_SCORES_MIN_WORK", 0)
    shape = Shape(batch=2, heads=1, length_q=5, length_k=7, dim=4, value_dim=4)
    with torch.no_grad():
        context = REGISTRY[name].build(shape)(make_problem(shape, family))
    assert context.shape == (2, 1, 5, 4) and torch.isfinite(context).all()


#: the training-step shape options of the scripts (step_shape.py): a tiny model, the same code
TINY_STEP = "--batch 2 --src-len 6 --tgt-len 5 --hidden 32 --vocab 50"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (f"key_projection_breakdown.py --profile --tgt-lengths 3 {TINY_STEP}",
         "| T | keys once ms"),
        (f"training_step_changes.py --parts 1,2,3 {TINY_STEP}", "readout once:"),
        (f"training_step_changes.py --parts 4 --cells 2x6x5 {TINY_STEP}",
         "| B=2 S=6 T=5 | per step |"),
        ("cpu_kernel_threshold.py", "| B | T_q | T_k | a |"),
        ("cpu_scores_threshold.py --repeats 1 --shapes 2 --steps 1",
         "| hidden 128, B=110, S=T=18 |"),
        (f"decoder_loop_bounds.py --rounds 1 {TINY_STEP}", "per-step weight gradients ms"),
    ],
)  # fmt: skip
@pytest.mark.slow
def test_the_committed_measurement_scripts_still_run(script, expected):
    """reports/benchmarks/README.md quotes their tables; one repeat proves they still run (on a
    tiny model: the shape options change sizes, not code paths)."""
    name, *options = script.split()
    path = Path(__file__).resolve().parents[1] / "reports" / "benchmarks" / "cpu" / name
    done = subprocess.run(
        [sys.executable, str(path), "--repeats", "1", *options],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout and "|---|" in done.stdout


def test_a_bad_training_step_shape_is_one_usage_line_and_exit_2():
    path = Path(__file__).resolve().parents[1] / "reports/benchmarks/cpu/decoder_loop_bounds.py"
    done = subprocess.run([sys.executable, str(path), "--hidden", "0"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "argument --hidden: invalid positive value: '0'" in done.stderr.splitlines()[-1]


def test_limits_are_measured_before_and_after_the_cells(fast_limits):
    result = tiny(["chunked"], lengths=(16,), modes=("forward",))
    assert [r["when"] for r in result.limits] == ["start", "start", "end", "end"]


def test_limit_trials_last_no_longer_than_a_cell(monkeypatch):
    trials = []
    monkeypatch.setattr(
        limits_mod, "tanh_limits", lambda device, seconds: trials.append(seconds) or []
    )
    monkeypatch.setattr(limits_mod, "matmul_limits",
                        lambda device, dtype, seconds: trials.append(seconds) or [])  # fmt: skip
    limits_mod.measure_limits("cpu", "float32")
    assert trials == [limits_mod.TANH_TRIAL_S, limits_mod.MATMUL_TRIAL_S]
    trials.clear()
    limits_mod.measure_limits("cpu", "float32", max_trial_s=0.05)
    assert trials == [0.05, 0.05]
    trials.clear()
    runner.run_benchmark(*tiny_spec_and_options(["chunked"], (16,), ("forward",)))
    assert trials == [0.05] * 4  # start and end, tanh and matmul: the cells' 0.05 s


def test_rational_tanh_matches_tanh_to_float32_accuracy():
    """Eigen's approximation, eager in float32, against float64 tanh: ~2.4e-7 on the dense grid,
    exactly +-1 far out, odd, and NaN stays NaN (the tanh limit and the CPU kernel's Inductor
    backend use it)."""
    from attnbench.attention.kernels.rational_tanh import rational_tanh

    x = torch.cat([torch.linspace(-12, 12, 200_001), torch.tensor([1e-30, -1e-8, 1e4, -1e30])])
    got = rational_tanh(x)
    assert (got.double() - torch.tanh(x.double())).abs().max() < 4e-7
    assert torch.equal(got, -rational_tanh(-x))
    assert got[-2].item() == 1.0 and got[-1].item() == -1.0
    assert rational_tanh(torch.tensor([float("nan")])).isnan().all()


def test_a_limit_method_that_fails_is_recorded_not_raised(monkeypatch):
    """Without a C++ compiler torch.compile fails; the other tanh methods still bound the run."""

    def no_compiler():
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(limits_mod, "compiled_rational_tanh_outer_sum", no_compiler)
    rows = limits_mod.tanh_limits("cpu", seconds=0.01)
    failed = [r for r in rows if r["method"].startswith("rational tanh")]
    assert len(failed) == 1 and failed[0]["rate"] != failed[0]["rate"]  # NaN
    assert failed[0]["note"] == "not measured: RuntimeError: no C++ compiler found"
    best = limits_mod.best([{**r, "when": "start"} for r in rows], "tanh")
    assert best == max(r["rate"] for r in rows if r is not failed[0])


def _limit(method: str, when: str, rate: float) -> dict:
    return {"limit": "matmul", "method": method, "dtype": "float32", "unit": "FLOP/s",
            "rate": rate, "source": "measured", "note": "", "when": when}  # fmt: skip


def test_a_limit_that_moved_during_the_run_is_flagged_in_the_report():
    from attnbench.bench.markdown import drift_note

    steady = [_limit("gemm", "start", 2.0e11), _limit("gemm", "end", 2.1e11)]
    assert limits_mod.drift(steady)[0]["change"] == pytest.approx(0.05)
    assert drift_note(steady) == (
        "The best limits measured again at the end of the run: matmul float32 +5% (stable)."
    )
    moved = [_limit("gemm", "start", 4.0e11), _limit("gemm", "end", 2.4e11)]
    note = drift_note(moved)
    assert note.startswith("**The device's speed moved during the run**")
    assert "matmul float32 -40%" in note and "within 40% of its threshold" in note
    # what counts is the best method at each time: a slower method's drop alone is no warning
    other = [_limit("slow", "start", 1.0e11), _limit("slow", "end", 0.5e11)]
    assert "(stable)" in drift_note([*steady, *other])
    # a run measured once (an older limits.parquet) or a limit not measured: no claim either way
    assert drift_note(moved[:1]) == "" and limits_mod.drift([]) == []
    assert drift_note([*moved[:1], _limit("gemm", "end", float("nan"))]) == ""


def test_the_pipeline_times_cells_as_its_config_says():
    from attnbench.config import load_config
    from attnbench.pipeline import bench_options

    quick = load_config(preset="quick")
    cpu = bench_options(quick, "cpu")
    assert (cpu.cell_seconds, cpu.max_seconds) == (quick.benchmark.bench_max_seconds / 4, 60)
    assert (cpu.repeats, cpu.warmup) == (5, 1)
    cuda = bench_options(quick, "cuda")
    assert (cuda.repeats, cuda.warmup) == (20, 3)
    named = load_config(preset="quick", overrides=["benchmark.bench_cell_seconds=0.05"])
    assert bench_options(named, "cpu").cell_seconds == 0.05
    with pytest.raises(UserError, match="bench_cell_seconds"):
        load_config(preset="quick", overrides=["benchmark.bench_cell_seconds=0"])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_mixed_precision_fused_path_cell_runs_on_cuda_only(device, monkeypatch):
    """On CUDA the full model adds a fused-path comparison under bfloat16 autocast at a size
    where the dispatch takes the kernel for training; the CPU has no such cell."""
    from attnbench.bench import full_model
    from attnbench.bench import model_modes as mm

    calls: list[tuple] = []

    def fake(name):
        def record(*args, **kwargs):
            calls.append((name, args, kwargs))
            row = {"mode": "train_step", "status": "ok", "throughput": 1.0}
            return [row, dict(row)] if name.endswith("comparison") else row

        return record

    for name in ("train_step_throughput", "greedy_decode_throughput",
                 "fused_path_comparison", "key_projection_comparison"):  # fmt: skip
        recorder = fake(name)
        recorder.__wrapped__ = getattr(mm, name)  # its signature, to read the calls by name
        monkeypatch.setattr(mm, name, recorder)
    spec, opts = tiny_spec_and_options(["sdpa"], modes=("model",))
    spec = default_spec(device, lengths=[16], modes=["model"])
    full_model.model_rows(spec, opts)
    amp = [c for c in calls if c[0] == "fused_path_comparison" and c[2].get("amp")]
    if device == "cpu":
        assert amp == []
    else:
        variant, batch, src, tgt, hidden = full_model.AMP_FUSED_PATH_CELL
        import inspect

        signature = inspect.signature(mm.fused_path_comparison.__wrapped__)
        bound = [signature.bind(*c[1], **c[2]).arguments for c in amp]
        names = ("variant", "device", "hidden", "batch", "src_len", "tgt_len")
        assert [tuple(b[n] for n in names) for b in bound] == [
            (variant, "cuda", hidden, batch, src, tgt)
        ]
        from attnbench.attention.additive import fused_path

        # the rule takes the kernel there for bf16 training (the cell's point)
        assert fused_path("cuda", {torch.bfloat16}, True, tgt, src * tgt * hidden, batch)
