"""Encoder + attentive decoder; everything but the attention score is shared across variants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from attnbench.attention import Attention, build_attention
from attnbench.models.decoder import DECODERS, AttentiveDecoder, DecoderState, Memory
from attnbench.models.encoder import Encoder

if TYPE_CHECKING:  # the model needs no pydantic at run time (benchmarks run without it)
    from attnbench.config import ModelConfig

PAD_ID = 0


class Seq2Seq(nn.Module):
    """Shapes: src (B, S) ids, src_lengths (B,), tgt_in (B, T) ids starting with BOS."""

    def __init__(self, encoder: Encoder, decoder: AttentiveDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Memory, DecoderState]:
        """src (B, S), src_lengths (B,) -> (memory over S keys, initial decoder state)."""
        outputs, final = self.encoder(src, src_lengths)
        memory = self.decoder.memory(outputs, src == PAD_ID)
        return memory, self.decoder.init_state(final)

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing -> (logits (B, T, V), attention weights (B, T, S) or None).

        Training passes `need_weights=False`: the attention may then use a fused kernel (the
        Triton one for additive attention on CUDA) that never builds the weights.
        """
        memory, state = self.encode(src, src_lengths)
        return self.decoder(tgt_in, state, memory, need_weights)


def build_model_attention(cfg: ModelConfig) -> Attention:
    """The attention a model config describes, from the registry by name."""
    attention_options = {"chunk_size": cfg.chunk_size} if cfg.chunk_size is not None else {}
    return build_attention(
        cfg.attention,
        query_dim=cfg.hidden_dim,
        key_dim=cfg.hidden_dim,
        attn_dim=cfg.attn_dim,
        num_heads=cfg.num_heads,
        **attention_options,
    )


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    """The model a config describes."""
    attention = build_model_attention(cfg)
    encoder = Encoder(
        src_vocab, cfg.emb_dim, cfg.hidden_dim, cfg.enc_layers, cfg.rnn, cfg.dropout, PAD_ID
    )
    common = {
        "num_layers": cfg.dec_layers,
        "rnn": cfg.rnn,
        "dropout": cfg.dropout,
        "pad_id": PAD_ID,
    }
    if cfg.decoder == "luong":
        common["input_feeding"] = cfg.input_feeding
    decoder = DECODERS[cfg.decoder](tgt_vocab, cfg.emb_dim, cfg.hidden_dim, attention, **common)
    return Seq2Seq(encoder, decoder)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
