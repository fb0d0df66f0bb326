"""Model-level benchmark modes: well-formed rows, and per-step keys really recompute, equally."""

from __future__ import annotations

import pytest
import torch

from attnbench.bench.model_modes import (
    PerStepKeys,
    build_bench_model,
    fused_path_comparison,
    greedy_decode_throughput,
    greedy_steps,
    key_projection_comparison,
    per_step_copy,
    random_batch,
    sequence_loss,
    train_step_throughput,
)

KEYS = {
    "mode", "variant", "implementation", "device", "batch", "length", "dim", "status",
    "seconds_median", "seconds_iqr", "repeats", "throughput", "throughput_unit",
}  # fmt: skip
SMALL = {"batch": 3, "src_len": 7, "hidden": 16, "repeats": 2, "warmup": 1, "vocab": 50}


def _ok(row: dict) -> None:
    assert row.keys() >= KEYS
    assert row["status"] == "ok", row["status"]
    assert row["seconds_median"] > 0 and row["seconds_iqr"] >= 0 and row["repeats"] == 2
    assert row["throughput"] > 0 and row["device"] == "cpu"


@pytest.mark.parametrize("variant", ["additive", "general"])
@pytest.mark.parametrize("recompute", [False, True])
def test_train_step_row(variant, recompute):
    row = train_step_throughput(variant, "cpu", tgt_len=5, recompute_keys=recompute, **SMALL)
    _ok(row)
    assert row["mode"] == "train_step" and row["throughput_unit"] == "target tokens/s"
    assert row["key_projection"] == ("per_step" if recompute else "once")
    assert row["throughput"] == pytest.approx(3 * 5 / row["seconds_median"])


def test_greedy_decode_row():
    row = greedy_decode_throughput("scaled_dot", "cpu", max_len=6, **SMALL)
    _ok(row)
    assert row["mode"] == "greedy_decode"
    assert row["throughput"] == pytest.approx(3 * 6 / row["seconds_median"])


def test_failure_is_a_row_not_an_exception():
    row = train_step_throughput("additive", "cpu", 2, 4, 3, hidden=7, repeats=1)  # odd hidden
    assert row["status"].startswith("error: ") and row["throughput"] is None


def test_comparison_rows_and_speedup():
    rows = key_projection_comparison(hidden=16, batch=2, src_len=6, tgt_len=4, repeats=2,
                                     vocab=40)  # fmt: skip
    assert [r["key_projection"] for r in rows] == ["once", "per_step"]
    for row in rows:
        _ok(row)
    assert rows[0]["speedup"] == pytest.approx(
        rows[1]["seconds_median"] / rows[0]["seconds_median"]
    )


def _count_key_proj(model) -> list[int]:
    attention = model.decoder.attention
    inner = attention.inner if isinstance(attention, PerStepKeys) else attention
    calls = [0]
    inner.key_proj.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_per_step_recomputes_and_computes_the_same():
    once = build_bench_model("additive", hidden=16, vocab=30).double()
    per_step = per_step_copy(once)
    same_seed = build_bench_model("additive", hidden=16, vocab=30, recompute_keys=True).double()
    once_calls, step_calls = _count_key_proj(once), _count_key_proj(per_step)
    data = random_batch(batch=3, src_len=6, tgt_len=5, vocab=30, device="cpu")
    loss_once, loss_step = sequence_loss(once, data), sequence_loss(per_step, data)
    assert once_calls == [1] and step_calls == [5]  # once per source vs once per target step
    assert torch.allclose(loss_once, loss_step, rtol=0, atol=1e-12)
    assert torch.allclose(loss_once, sequence_loss(same_seed, data), rtol=0, atol=1e-12)
    loss_once.backward()
    loss_step.backward()
    for (name, a), (_, b) in zip(once.named_parameters(), per_step.named_parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-12), name
    with torch.no_grad():
        assert torch.equal(greedy_steps(once, data, 4), greedy_steps(per_step, data, 4))
    assert step_calls[0] == 5 + 4  # decoding recomputes at each of its 4 steps too


@pytest.mark.parametrize("variant", ["additive", "scaled_dot"])
def test_fused_path_comparison_times_both_paths_of_one_model(variant, monkeypatch):
    from attnbench.bench import model_modes

    asked: list[bool] = []
    real = model_modes.sequence_loss

    def spy(model, data, need_weights=False):
        asked.append(need_weights)
        return real(model, data, need_weights)

    monkeypatch.setattr(model_modes, "sequence_loss", spy)
    rows = fused_path_comparison(variant, hidden=16, batch=2, src_len=6, tgt_len=4, repeats=2,
                                 vocab=40)  # fmt: skip
    assert [r["implementation"] for r in rows] == ["fused_path", "reference_path"]
    assert {r["decoder"] for r in rows} == {"luong"}  # all target steps in one call
    for row in rows:
        _ok(row)
    assert rows[0]["speedup"] == pytest.approx(
        rows[1]["seconds_median"] / rows[0]["seconds_median"]
    )
    assert set(asked) == {False, True}  # both paths really ran (warm-up + 2 repeats each)
    assert asked.count(False) == asked.count(True) == 3


def test_fused_path_comparison_under_amp_runs_both_paths_in_bfloat16(monkeypatch):
    """`amp=True` (the trainer's default on CUDA) puts both sides' forward under bfloat16
    autocast and says so in the rows."""
    from attnbench.bench import model_modes

    autocast: list[bool] = []
    real = model_modes.sequence_loss

    def spy(model, data, need_weights=False):
        autocast.append(torch.is_autocast_enabled("cpu"))
        return real(model, data, need_weights)

    monkeypatch.setattr(model_modes, "sequence_loss", spy)
    rows = fused_path_comparison("additive", hidden=16, batch=2, src_len=6, tgt_len=4,
                                 repeats=2, vocab=40, amp=True)  # fmt: skip
    for row in rows:
        _ok(row)
        assert row["precision"] == "bfloat16 autocast"
    assert autocast == [True] * 6
    plain = fused_path_comparison("additive", hidden=16, batch=2, src_len=6, tgt_len=4,
                                  repeats=1, vocab=40)  # fmt: skip
    assert {r["precision"] for r in plain} == {"float32"} and autocast[6:] == [False] * 4


def test_decoder_loop_fn_computes_the_decoders_teacher_forced_pass():
    """Its gradients equal those of BahdanauDecoder.forward with the generator left out, on
    the same encoder outputs; the encoder itself gets none (its outputs are fixed)."""
    import copy

    from attnbench.bench.model_modes import decoder_loop_fn
    from attnbench.models.seq2seq import PAD_ID

    torch.set_default_dtype(torch.float64)
    try:
        model = build_bench_model("additive", 16, 40).train()
        data = random_batch(3, 7, 5, 40, "cpu")
        twin = copy.deepcopy(model)
        decoder_loop_fn(model, data)()
        twin.decoder.generator = torch.nn.Identity()  # logits = the readout's pre-output
        with torch.no_grad():
            keys, final = twin.encoder(data["src"], data["src_lengths"])
        dec = twin.decoder
        memory = dec.memory(keys, data["src"].eq(PAD_ID))
        logits, _ = dec(data["tgt_in"], dec.init_state(final), memory, need_weights=False)
        logits.sum().backward()
    finally:
        torch.set_default_dtype(torch.float32)
    assert all(p.grad is None for p in model.encoder.parameters())
    expected = dict(twin.decoder.named_parameters())
    for name, p in model.decoder.named_parameters():
        if name.startswith("generator."):
            assert p.grad is None
            continue
        torch.testing.assert_close(p.grad, expected[name].grad, msg=name)
