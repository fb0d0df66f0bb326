"""Whole-model benchmark modes: a training step, greedy decoding, key projection once vs per step.

The attention grid times attention alone; these time a full Seq2Seq model, where the score
function is one cost among the RNNs, the readout and the generator, so they say how much the
choice of attention matters in practice. Every row is tidy (one dict, fixed keys), timed with
warm-up, synchronised clocks on CUDA, median and IQR over repeats; failures are recorded in
`status`, never raised.

`recompute_keys=True` reproduces what tutorial code does: the attention's key projection
U_a h_j runs at every target step (B*S*D_k*A multiply-adds per step) instead of once per
source (`Memory.prepared`). It wraps the decoder's attention rather than editing the models.

Imports only torch and attnbench.attention/models (which need no pydantic at run time), so it
runs on a bare GPU machine.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.attention import build_attention
from attnbench.models.decoder import DECODERS, DecoderStyle
from attnbench.models.encoder import Encoder
from attnbench.models.seq2seq import PAD_ID, Seq2Seq
from attnbench.optim import adam

BOS_ID = 2  # as attnbench.models.search; token ids >= 4 are ordinary words
FIRST_WORD_ID = 4


class PerStepKeys(nn.Module):
    """Wraps an attention so the key projection runs on every call, i.e. every decoder step.

    `prepare_keys` is the identity, so `Memory.prepared` holds the raw keys and nothing is
    projected up front; `forward` drops `prepared_keys`, so the wrapped attention projects the
    keys itself each time. Parameters are the wrapped module's own, so results are unchanged.
    """

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.inner = attention

    def prepare_keys(self, keys: Tensor) -> Tensor:
        return keys

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        key_padding_mask: Tensor | None = None,
        prepared_keys: Tensor | None = None,
        **options: Any,
    ) -> tuple[Tensor, Tensor | None]:
        return self.inner(query, keys, values, key_padding_mask, prepared_keys=None, **options)


def build_bench_model(
    variant: str,
    hidden: int,
    vocab: int = 8000,
    emb_dim: int | None = None,
    decoder: DecoderStyle = "bahdanau",
    recompute_keys: bool = False,
    seed: int = 0,
) -> Seq2Seq:
    """The model `attnbench.models.build_model` builds for these settings, dropout 0.

    Built from the classes rather than a `ModelConfig` so that this module needs no pydantic
    object; the same seed gives the same weights with or without `recompute_keys`.
    """
    emb_dim = emb_dim or hidden // 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attention = build_attention(variant, query_dim=hidden, key_dim=hidden)
        encoder = Encoder(vocab, emb_dim, hidden, pad_id=PAD_ID)
        dec = DECODERS[decoder](vocab, emb_dim, hidden, attention, pad_id=PAD_ID)
    model = Seq2Seq(encoder, dec)
    if recompute_keys:
        model.decoder.attention = PerStepKeys(model.decoder.attention)
    return model


def per_step_copy(model: Seq2Seq) -> Seq2Seq:
    """A copy of `model` with the same weights whose decoder projects keys at every step."""
    twin = copy.deepcopy(model)
    twin.decoder.attention = PerStepKeys(twin.decoder.attention)
    return twin


def random_batch(
    batch: int, src_len: int, tgt_len: int, vocab: int, device: torch.device | str, seed: int = 0
) -> dict[str, Tensor]:
    """src (B, S), src_lengths (B,), tgt_in (B, T) starting with BOS, tgt_out (B, T).

    Full-length sentences (no padding), so every variant and path does the same work.
    """
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(FIRST_WORD_ID, vocab, (batch, src_len), generator=gen)
    tgt = torch.randint(FIRST_WORD_ID, vocab, (batch, tgt_len), generator=gen)
    tgt_in = torch.cat([torch.full((batch, 1), BOS_ID), tgt[:, :-1]], dim=1)
    out = {"src": src, "src_lengths": torch.full((batch,), src_len), "tgt_in": tgt_in}
    out = {k: v.to(device) for k, v in out.items()}
    out["src_lengths"] = out["src_lengths"].cpu()  # pack_padded_sequence wants CPU lengths
    out["tgt_out"] = tgt.to(device)
    return out


def sequence_loss(model: Seq2Seq, data: dict[str, Tensor], need_weights: bool = False) -> Tensor:
    """Teacher-forced token cross-entropy, the loss a training step minimises.

    Without weights, as the trainer calls it: the attention may take its fused path.
    """
    logits, _ = model(data["src"], data["src_lengths"], data["tgt_in"], need_weights=need_weights)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), data["tgt_out"].reshape(-1), ignore_index=PAD_ID
    )


def greedy_steps(model: Seq2Seq, data: dict[str, Tensor], steps: int) -> Tensor:
    """Greedy decoding for exactly `steps` steps (no EOS stop) -> tokens (B, steps).

    `attnbench.models.greedy_search` stops once every sentence has emitted EOS, which an
    untrained model does at random; a fixed step count makes variants do equal work.
    """
    memory, state = model.encode(data["src"], data["src_lengths"])
    prev = torch.full((data["src"].shape[0],), BOS_ID, dtype=torch.long, device=data["src"].device)
    tokens = []
    for _ in range(steps):
        logits, state, _ = model.decoder.step(prev, state, memory)
        prev = logits.argmax(-1)
        tokens.append(prev)
    return torch.stack(tokens, dim=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    tic = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - tic


def interleaved(
    fns: list[Callable[[], object]], device: torch.device, repeats: int, warmup: int
) -> list[list[float]]:
    """Times for each fn, taken in turns so drifting machine load hits all of them alike.

    The order alternates every round (A B, B A, ...): on this CPU the same training step was
    up to 5% slower when timed first in its round than second, which would bias a ratio.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(repeats):
        order = range(len(fns)) if round_ % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            times[i].append(_timed(fns[i], device))
    return times


def _summary(times: list[float], work: float) -> dict[str, Any]:
    median = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [median] * 3
    return {
        "status": "ok",
        "seconds_median": median,
        "seconds_iqr": q[2] - q[0],
        "repeats": len(times),
        "throughput": work / median,
    }


def _failure(exc: BaseException, device: torch.device) -> dict[str, Any]:
    if isinstance(exc, torch.OutOfMemoryError):
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"status": "out of memory"}
    return {"status": f"error: {type(exc).__name__}: {exc}"[:300]}


def _base_row(mode: str, variant: str, device: torch.device, **fields: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "variant": variant,
        "device": device.type,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "status": None,
        "seconds_median": None,
        "seconds_iqr": None,
        "repeats": 0,
        "throughput": None,
        **fields,
    }


def train_step_fn(
    model: Seq2Seq, data: dict[str, Tensor], need_weights: bool = False, amp: bool = False
) -> Callable[[], float]:
    """One Adam step on `data` per call: what the train-step modes time. `amp`: the forward
    under bfloat16 autocast, as the trainer runs on CUDA by default (`TrainConfig.amp`)."""
    optimizer = adam(model.parameters(), lr=1e-4)
    device_type = data["src"].device.type

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            loss = sequence_loss(model, data, need_weights)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def decoder_loop_fn(model: Seq2Seq, data: dict[str, Tensor]) -> Callable[[], None]:
    """The Bahdanau decoder's T recurrent steps and readout, forward and backward, on encoder
    outputs computed once: the part of a training step the measurement scripts under
    reports/benchmarks/cpu take apart (keys, bridge and decoder weights get gradients)."""
    dec = model.decoder
    with torch.no_grad():
        annotations, final = model.encoder(data["src"], data["src_lengths"])
    mask = data["src"].eq(PAD_ID)

    def loop() -> None:
        memory = dec.memory(annotations.detach().requires_grad_(), mask)
        state = dec.init_state(final.detach().requires_grad_())
        embedded = dec.embedding(data["tgt_in"])
        outputs, contexts = [], []
        with dec._teacher_forcing(data["tgt_in"]):  # as BahdanauDecoder.forward: steps, readout
            for t in range(embedded.shape[1]):
                out, ctx, state, _ = dec._recur(embedded[:, t : t + 1], state, memory, False)
                outputs.append(out)
                contexts.append(ctx)
        dec._readout(torch.cat(outputs, 1), torch.cat(contexts, 1), embedded).sum().backward()

    return loop


def _train_row(variant: str, device: torch.device, batch: int, src_len: int, tgt_len: int,
               hidden: int, vocab: int, recompute: bool, implementation: str | None = None,
               decoder: DecoderStyle = "bahdanau",
               amp: bool = False) -> dict[str, Any]:  # fmt: skip
    return _base_row(
        "train_step", variant, device,
        implementation=implementation or ("keys_per_step" if recompute else "keys_once"),
        key_projection="per_step" if recompute else "once",
        decoder=decoder, batch=batch, length=src_len, src_len=src_len, tgt_len=tgt_len,
        dim=hidden, precision="bfloat16 autocast" if amp else "float32",
        attn_dim=hidden, emb_dim=hidden // 2, vocab=vocab, optimizer="adam",
        throughput_unit="target tokens/s",
        # multiply-adds of U_a h_j for the whole batch; per target step when recomputed
        key_proj_macs=batch * src_len * hidden * hidden,
    )  # fmt: skip


def train_step_throughput(
    variant: str,
    device: torch.device | str,
    batch: int,
    src_len: int,
    tgt_len: int,
    hidden: int,
    repeats: int = 5,
    warmup: int = 1,
    recompute_keys: bool = False,
    vocab: int = 8000,
) -> dict[str, Any]:
    """One optimiser step (forward, loss, backward, Adam) of a Bahdanau-decoder Seq2Seq.

    throughput = target tokens per second = batch * tgt_len / median step time.
    """
    device = torch.device(device)
    row = _train_row(variant, device, batch, src_len, tgt_len, hidden, vocab, recompute_keys)
    try:
        model = build_bench_model(variant, hidden, vocab, recompute_keys=recompute_keys)
        model = model.to(device).train()
        data = random_batch(batch, src_len, tgt_len, vocab, device)
        (times,) = interleaved([train_step_fn(model, data)], device, repeats, warmup)
    except Exception as exc:  # a failed cell is a row, not a crash
        return {**row, **_failure(exc, device)}
    return {**row, **_summary(times, batch * tgt_len)}


def greedy_decode_throughput(
    variant: str,
    device: torch.device | str,
    batch: int,
    src_len: int,
    max_len: int,
    hidden: int,
    repeats: int = 5,
    warmup: int = 1,
    recompute_keys: bool = False,
    vocab: int = 8000,
) -> dict[str, Any]:
    """Greedy decoding of exactly `max_len` tokens per sentence (encoder included), no grad.

    throughput = generated tokens per second = batch * max_len / median time.
    """
    device = torch.device(device)
    row = _base_row(
        "greedy_decode", variant, device,
        implementation="keys_per_step" if recompute_keys else "keys_once",
        key_projection="per_step" if recompute_keys else "once",
        decoder="bahdanau", batch=batch, length=src_len, src_len=src_len, tgt_len=max_len,
        dim=hidden, attn_dim=hidden, emb_dim=hidden // 2, vocab=vocab,
        throughput_unit="generated tokens/s",
    )  # fmt: skip
    try:
        model = build_bench_model(variant, hidden, vocab, recompute_keys=recompute_keys)
        model = model.to(device).eval()
        data = random_batch(batch, src_len, max_len, vocab, device)

        def decode() -> Tensor:
            with torch.inference_mode():
                return greedy_steps(model, data, max_len)

        (times,) = interleaved([decode], device, repeats, warmup)
    except Exception as exc:
        return {**row, **_failure(exc, device)}
    return {**row, **_summary(times, batch * max_len)}


def median_ms(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Median milliseconds per named function, timed in turns (`interleaved`, one warm-up):
    the measurement scripts under reports/benchmarks use it."""
    times = interleaved(list(fns.values()), torch.device(device), repeats, warmup=1)
    return {name: 1e3 * statistics.median(t) for name, t in zip(fns, times, strict=True)}


def key_projection_comparison(
    device: torch.device | str = "cpu",
    hidden: int = 512,
    batch: int = 16,
    src_len: int = 80,
    tgt_len: int = 20,
    repeats: int = 5,
    warmup: int = 1,
    variant: str = "additive",
    vocab: int = 8000,
) -> list[dict[str, Any]]:
    """Training step with U_a h_j computed once per source vs at every target step.

    Both models hold the same initial weights and see the same batch; their steps are timed
    in turns. The once-row gets `speedup` = per-step median time / once median time.
    """
    device = torch.device(device)
    rows = [
        _train_row(variant, device, batch, src_len, tgt_len, hidden, vocab, recompute)
        for recompute in (False, True)
    ]

    def steps() -> list[Callable[[], object]]:
        once = build_bench_model(variant, hidden, vocab).to(device).train()
        data = random_batch(batch, src_len, tgt_len, vocab, device)
        return [train_step_fn(once, data), train_step_fn(per_step_copy(once), data)]

    return _side_by_side(rows, steps, device, repeats, warmup, batch * tgt_len)


def fused_path_comparison(
    variant: str,
    device: torch.device | str = "cpu",
    hidden: int = 256,
    batch: int = 32,
    src_len: int = 64,
    tgt_len: int = 64,
    repeats: int = 5,
    warmup: int = 1,
    vocab: int = 8000,
    decoder: DecoderStyle = "luong",
    amp: bool = False,
) -> list[dict[str, Any]]:
    """Training step as the trainer runs it (`need_weights=False`: the attention's fused path,
    Triton for additive on CUDA, SDPA for the dot-product family) vs the reference path that
    builds the weights; same model, same batch, timed in turns. `speedup` on the first row.
    `amp`: both under bfloat16 autocast, the trainer's default on CUDA.

    The Luong decoder (no input feeding) attends for all target steps in one call. On CUDA
    the additive kernel's dispatch rule (`attention.additive.fused_path`) takes the fused
    kernel for training only from 2**30 tanh per call with 16-bit inputs (`amp`) and from
    2**33 in float32. The default shape has 2**25, where the kernel measured 0.44x on an
    H200 under the earlier rule (from 32 queries), so both additive rows run the reference
    path there, as training does. On CPU additive attention has no fused backward, so both
    rows run the same code there too.
    """
    device = torch.device(device)
    shape = (batch, src_len, tgt_len, hidden, vocab)
    rows = [
        _train_row(variant, device, *shape, False, name, decoder, amp)
        for name in ("fused_path", "reference_path")
    ]

    def steps() -> list[Callable[[], object]]:
        model = build_bench_model(variant, hidden, vocab, decoder=decoder).to(device).train()
        data = random_batch(batch, src_len, tgt_len, vocab, device)
        return [train_step_fn(model, data, amp=amp),
                train_step_fn(model, data, need_weights=True, amp=amp)]  # fmt: skip

    return _side_by_side(rows, steps, device, repeats, warmup, batch * tgt_len)


def _side_by_side(
    rows: list[dict[str, Any]],
    build: Callable[[], list[Callable[[], object]]],
    device: torch.device,
    repeats: int,
    warmup: int,
    work: float,
) -> list[dict[str, Any]]:
    """Time the two functions `build` returns in turns; rows[0] gets `speedup` = time of the
    second / time of the first. A failure fills both rows."""
    try:
        times = interleaved(build(), device, repeats, warmup)
    except Exception as exc:
        failure = _failure(exc, device)
        return [{**row, **failure} for row in rows]
    rows = [{**row, **_summary(t, work)} for row, t in zip(rows, times, strict=True)]
    rows[0]["speedup"] = rows[1]["seconds_median"] / rows[0]["seconds_median"]
    rows[1]["speedup"] = None
    return rows
