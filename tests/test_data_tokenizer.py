"""Tokenizers: SentencePiece training, caching, round trips; word tokenizer save/load."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    SentencePieceTokenizer,
    WordTokenizer,
    build_word_tokenizer,
    load_multi30k,
    load_tokenizer,
    train_tokenizer,
)
from attnbench.data import tokenizer as tokenizer_mod
from attnbench.errors import UserError


@pytest.fixture(scope="module")
def val_de(shared_data: Path) -> list[str]:
    """German side of Multi30k val from ../shared/data (fails, never skips, if absent)."""
    return load_multi30k("val", "en", "de", data_dir=shared_data).tgt


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_sentencepiece_round_trip(val_de: list[str], tmp_path: Path, kind: str) -> None:
    tok = train_tokenizer(val_de, vocab_size=800, kind=kind, cache_dir=tmp_path)
    assert isinstance(tok, SentencePieceTokenizer)
    assert 100 < tok.vocab_size <= 800
    normal = [s for s in val_de if " ".join(s.split()) == s]
    assert len(normal) > 900
    for s in normal[:300]:
        ids = tok.encode(s)
        assert ids and min(ids) > EOS_ID  # no specials, no UNK on training text
        assert tok.decode(ids) == s
        assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == s
    assert tok.encode_batch(normal[:5]) == [tok.encode(s) for s in normal[:5]]


def test_sentencepiece_cache_hit(
    val_de: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = val_de[:300]
    first = train_tokenizer(texts, 300, "unigram", cache_dir=tmp_path)
    models = list(tmp_path.glob("*.model"))
    assert len(models) == 1
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".model"]  # no temp leftovers

    def boom(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(tokenizer_mod, "_train_sentencepiece", boom)
    second = train_tokenizer(list(texts), 300, "unigram", cache_dir=tmp_path)
    assert [second.encode(s) for s in texts[:20]] == [first.encode(s) for s in texts[:20]]
    with pytest.raises(AssertionError):  # other inputs -> other cache key
        train_tokenizer(texts, 301, "unigram", cache_dir=tmp_path)
    with pytest.raises(AssertionError):
        train_tokenizer(texts[:-1], 300, "unigram", cache_dir=tmp_path)


def test_sentencepiece_tiny_corpus_big_vocab_and_save(tmp_path: Path) -> None:
    tok = train_tokenizer(["ein Hund", "eine Katze"], 5000, "bpe", cache_dir=tmp_path)
    assert tok.vocab_size < 5000
    assert tok.decode(tok.encode("eine Katze")) == "eine Katze"
    assert tok.encode("q")[-1] == UNK_ID
    tok.save(tmp_path / "saved.model")
    again = load_tokenizer(tmp_path / "saved.model")
    assert again.encode("ein Hund") == tok.encode("ein Hund")


def test_word_tokenizer_build_and_round_trip(tmp_path: Path) -> None:
    texts = ["t1 t2 t2", "t3 t2 t1", "t0"]
    tok = build_word_tokenizer(texts)
    assert tok.vocab_size == 4 + 4
    # frequency first (t2: 3, t1: 2), then token order (t0 < t3)
    assert tok.encode("t2 t1 t0 t3") == [4, 5, 6, 7]
    assert tok.encode("t9") == [UNK_ID]
    assert tok.decode([BOS_ID, 4, 5, EOS_ID, PAD_ID]) == "t2 t1"
    path = tmp_path / "word.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, WordTokenizer)
    assert loaded.vocab_size == tok.vocab_size
    for t in texts:
        assert loaded.decode(loaded.encode(t)) == t


def test_word_tokenizer_via_train_and_vocab_cap(tmp_path: Path) -> None:
    texts = ["a a a b b c", "d"]
    assert train_tokenizer(texts, 1000, "word", cache_dir=tmp_path).vocab_size == 8
    capped = train_tokenizer(texts, 6, "word", cache_dir=tmp_path)
    assert capped.vocab_size == 6
    assert capped.encode("a b c d") == [4, 5, UNK_ID, UNK_ID]


def test_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unigram, bpe, word"):
        train_tokenizer(["a"], 10, "char", cache_dir=tmp_path)
    with pytest.raises(UserError, match="at least 5"):
        build_word_tokenizer(["a"], max_vocab=4)
    with pytest.raises(UserError, match="unknown tokenizer file type"):
        load_tokenizer(tmp_path / "tok.pkl")
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(tmp_path / "missing.model")
    (tmp_path / "bad.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.json"):
        load_tokenizer(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(UserError, match=r"broken\.json"):
        load_tokenizer(tmp_path / "broken.json")
