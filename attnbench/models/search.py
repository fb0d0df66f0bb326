"""Batched greedy and beam search. Both return, per sentence, the tokens and attention weights.

Output length is capped at `max_len_a * source_length + max_len_b` (fairseq's convention),
per sentence, so a model that never emits EOS cannot run away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attnbench.models.seq2seq import Seq2Seq

BOS_ID, EOS_ID = 2, 3


@dataclass
class Hypothesis:
    """tokens: output ids without BOS/EOS; weights (len(tokens) + 1, S): one row per step
    including the step that emitted EOS (when it did); score: length-normalised log-prob."""

    tokens: list[int]
    weights: Tensor
    score: float


def _length_limits(src_lengths: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    return (src_lengths.float() * max_len_a).long() + max_len_b


@torch.no_grad()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
) -> list[Hypothesis]:
    """src (B, S), src_lengths (B,) -> B hypotheses, picking the arg-max token at every step."""
    memory, state = model.encode(src, src_lengths)
    batch = src.shape[0]
    limits = _length_limits(src_lengths, max_len_a, max_len_b).to(src.device)
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    tokens, weights = [], []
    for step in range(int(limits.max())):
        logits, state, w = model.decoder.step(prev, state, memory)
        logp = torch.log_softmax(logits.float(), dim=-1)
        prev = logp.argmax(-1)
        scores += torch.where(done, 0.0, logp.gather(1, prev[:, None]).squeeze(1))
        tokens.append(torch.where(done, EOS_ID, prev))
        weights.append(w)
        done |= (prev == EOS_ID) | (step + 1 >= limits)
        if done.all():
            break
    all_tokens = torch.stack(tokens, 1).tolist()  # (B, T_out)
    all_weights = torch.stack(weights, 1).float().cpu()  # (B, T_out, S)
    out = []
    for b, seq in enumerate(all_tokens):
        n = seq.index(EOS_ID) if EOS_ID in seq else len(seq)
        steps = min(n + 1, len(seq))
        out.append(
            Hypothesis(seq[:n], all_weights[b, :steps, : int(src_lengths[b])], float(scores[b]))
        )
    return out


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    beam_size: int = 5,
    alpha: float = 0.6,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
) -> list[Hypothesis]:
    """src (B, S), src_lengths (B,) -> B best hypotheses by log-prob / lp(length).

    All B * K beams advance in one batched decoder step. A beam that emits EOS among the top
    K candidates is finished; a sentence is done once it has K finished hypotheses or reaches
    its length cap, when its live beams are finished as they stand.
    """
    if beam_size == 1:
        return greedy_search(model, src, src_lengths, max_len_a, max_len_b)
    device, batch, k = src.device, src.shape[0], beam_size
    memory, state = model.encode(src, src_lengths)
    expand = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K,)
    memory, state = memory.index_select(expand), state.index_select(expand)
    limits = _length_limits(src_lengths, max_len_a, max_len_b).tolist()
    beam_scores = torch.full((batch, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0  # only one live beam at the start: no duplicates
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    history = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    attn = torch.empty(batch * k, 0, src.shape[1], device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch
    src_len = src_lengths.tolist()
    for step in range(max(limits)):
        logits, state, w = model.decoder.step(prev, state, memory)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        vocab = logp.shape[-1]
        cand = (beam_scores.view(-1, 1) + logp).view(batch, k * vocab)
        top_scores, top_idx = cand.topk(2 * k, dim=1)  # (B, 2K)
        origin = top_idx // vocab + torch.arange(batch, device=device)[:, None] * k
        token = top_idx % vocab
        attn_all = torch.cat([attn, w.float().unsqueeze(1)], dim=1)  # (B*K, t+1, S)
        is_eos = token == EOS_ID
        for b, j in (is_eos[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero().tolist():
            if not done[b]:
                row = int(origin[b, j])
                n = history.shape[1]
                score = float(top_scores[b, j]) / length_penalty(n + 1, alpha)
                weights = attn_all[row, :, : src_len[b]].cpu()
                finished[b].append(Hypothesis(history[row].tolist(), weights, score))
        # keep the best K non-EOS candidates per sentence, in score order
        rank = torch.where(is_eos, 2 * k, torch.arange(2 * k, device=device).expand(batch, -1))
        keep = rank.argsort(dim=1, stable=True)[:, :k]  # (B, K)
        sel_origin = origin.gather(1, keep).view(-1)
        beam_scores = top_scores.gather(1, keep)
        prev = token.gather(1, keep).view(-1)
        history = torch.cat([history[sel_origin], prev[:, None]], dim=1)
        attn = attn_all[sel_origin]
        state = state.index_select(sel_origin)
        for b in range(batch):
            if not done[b] and (len(finished[b]) >= k or step + 1 >= limits[b]):
                done[b] = True
                if len(finished[b]) < k:  # length cap reached: close the live beams
                    for j in range(k):
                        row = b * k + j
                        if torch.isfinite(beam_scores[b, j]):
                            score = float(beam_scores[b, j]) / length_penalty(step + 1, alpha)
                            weights = attn[row, :, : src_len[b]].cpu()
                            finished[b].append(Hypothesis(history[row].tolist(), weights, score))
        if all(done):
            break
        beam_scores = beam_scores.masked_fill(torch.tensor(done, device=device)[:, None], -1e9)
    return [max(hyps, key=lambda h: h.score) for hyps in finished]
