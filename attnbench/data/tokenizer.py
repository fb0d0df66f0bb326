"""Tokenizers with fixed special ids, so models and batching never ask which is which.

`unigram` / `bpe` wrap SentencePiece (for natural language; decoding restores raw text for
BLEU); `word` splits on whitespace (for synthetic tasks whose tokens are already symbols).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from attnbench.data.sources import default_cache_root
from attnbench.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
TOKENIZER_KINDS = ("unigram", "bpe", "word")
_DROPPED_ON_DECODE = frozenset({PAD_ID, BOS_ID, EOS_ID})
_WORD_FORMAT = "attnbench-word-tokenizer"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and `os.replace`, so no reader sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Tokenizer(ABC):
    """Text <-> ids. Ids 0-3 are always PAD, UNK, BOS, EOS."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, specials included (the embedding table size)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without BOS/EOS."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Detokenised text for scoring against raw references; PAD/BOS/EOS are dropped."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the tokenizer so `load_tokenizer(path)` restores it."""

    def pieces(self, ids: list[int]) -> list[str]:
        """One readable label per id (axis labels of attention maps)."""
        return [self.decode([i]) or f"<{i}>" for i in ids]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` over many texts (subclasses may do it faster)."""
        return [self.encode(t) for t in texts]


class SentencePieceTokenizer(Tokenizer):
    """A trained SentencePiece model (unigram or BPE)."""

    def __init__(self, model_proto: bytes, source: str = "<memory>") -> None:
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise UserError(
                f"SentencePiece model {source} has special ids {ids}, expected (0, 1, 2, 3); "
                "retrain it with attnbench's train_tokenizer"
            )

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceTokenizer:
        """Load a `.model` file."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}; check the path or retrain")
        return cls(path.read_bytes(), source=str(path))

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts, num_threads=2)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([i for i in ids if i not in _DROPPED_ON_DECODE])

    def save(self, path: str | Path) -> None:
        _atomic_write(Path(path), self._proto)


class WordTokenizer(Tokenizer):
    """Whitespace tokens looked up in a fixed vocabulary; unknown words map to UNK."""

    def __init__(self, words: list[str]) -> None:
        """`words`: the non-special vocabulary, in id order starting at 4."""
        self._itos = [*SPECIAL_TOKENS, *words]
        self._stoi = {w: i for i, w in enumerate(words, start=len(SPECIAL_TOKENS))}

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        """Load a tokenizer written by `save` (JSON, never pickle)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}; check the path or retrain")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ok = data.get("format") == _WORD_FORMAT and data["tokens"][:4] == list(SPECIAL_TOKENS)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"cannot read word tokenizer {path} ({e}); retrain it") from e
        if not ok:
            raise UserError(f"{path} is not an attnbench word tokenizer; retrain it")
        return cls(data["tokens"][len(SPECIAL_TOKENS) :])

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def encode(self, text: str) -> list[int]:
        return [self._stoi.get(w, UNK_ID) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self._itos[i] for i in ids if i not in _DROPPED_ON_DECODE)

    def save(self, path: str | Path) -> None:
        data = {"format": _WORD_FORMAT, "version": 1, "tokens": self._itos}
        _atomic_write(Path(path), json.dumps(data, ensure_ascii=False, indent=0).encode())


def build_word_tokenizer(texts: Iterable[str], max_vocab: int | None = None) -> WordTokenizer:
    """Vocabulary of whitespace tokens, most frequent first (ties by token, deterministic).

    `max_vocab` caps the total size, the 4 specials included.
    """
    if max_vocab is not None and max_vocab <= len(SPECIAL_TOKENS):
        raise UserError(
            f"word vocabulary size {max_vocab} leaves no room beyond the 4 special tokens; "
            "use a vocab_size of at least 5"
        )
    counts = Counter(w for t in texts for w in t.split())
    for s in SPECIAL_TOKENS:
        counts.pop(s, None)
    words = sorted(counts, key=lambda w: (-counts[w], w))
    if max_vocab is not None:
        words = words[: max_vocab - len(SPECIAL_TOKENS)]
    return WordTokenizer(words)


def _cache_key(texts: list[str], vocab_size: int, kind: str) -> str:
    h = hashlib.sha256(f"{vocab_size}\0{kind}\0{spm.__version__}\0".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def _train_sentencepiece(texts: list[str], vocab_size: int, kind: str) -> bytes:
    """Serialized model trained in memory (no temp corpus file)."""
    out = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=out,
            model_type=kind,
            vocab_size=vocab_size,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            character_coverage=1.0,
            hard_vocab_limit=False,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        reason = str(e).replace("\n", " ")
        raise UserError(
            f"SentencePiece could not train a {kind} model with vocab_size {vocab_size}: "
            f"{reason}; change vocab_size or provide more text"
        ) from e
    return out.getvalue()


def default_tokenizer_cache() -> Path:
    """`$ATTNBENCH_CACHE_DIR/tokenizers`, or `~/.cache/attnbench/tokenizers`."""
    return default_cache_root() / "tokenizers"


def train_tokenizer(
    texts: list[str],
    vocab_size: int,
    kind: str = "unigram",
    cache_dir: Path | None = None,
) -> Tokenizer:
    """Train (or load from cache) a tokenizer of `kind` in `TOKENIZER_KINDS`.

    SentencePiece models are cached as `cache_dir/spm-{kind}-{vocab_size}-{hash}.model`, the
    hash covering the texts, size, kind and SentencePiece version, so reruns skip training.
    `word` is cheap and not cached; it keeps the `vocab_size` most frequent entries.
    """
    if kind not in TOKENIZER_KINDS:
        raise UserError(
            f"unknown tokenizer kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}"
        )
    if kind == "word":
        return build_word_tokenizer(texts, max_vocab=vocab_size)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"tokenizer vocab_size must exceed 4, got {vocab_size}; raise it")
    if not texts:
        raise UserError("cannot train a tokenizer on no text; check the training corpus")
    cache = Path(cache_dir).expanduser() if cache_dir else default_tokenizer_cache()
    path = cache / f"spm-{kind}-{vocab_size}-{_cache_key(texts, vocab_size, kind)}.model"
    if path.is_file():
        return SentencePieceTokenizer.load(path)
    tok = SentencePieceTokenizer(_train_sentencepiece(texts, vocab_size, kind), source=str(path))
    tok.save(path)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a saved tokenizer: `.model` is SentencePiece, `.json` is word."""
    path = Path(path)
    if path.suffix == ".model":
        return SentencePieceTokenizer.load(path)
    if path.suffix == ".json":
        return WordTokenizer.load(path)
    raise UserError(
        f"unknown tokenizer file type: {path}; expected a .model (SentencePiece) or .json (word)"
    )
