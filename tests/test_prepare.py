"""Config -> data: user corpora (aligned files or TSV), Multi30k pairs, synthetic splits."""

from __future__ import annotations

import pytest

from attnbench.config import validate_config
from attnbench.data.prepare import evaluation_splits, load_split, prepare_data
from attnbench.errors import UserError


def test_user_corpora_from_aligned_files_and_tsv(tmp_path):
    (tmp_path / "train.src").write_text("a b c\nd e\nf g h i\n" * 20, encoding="utf-8")
    (tmp_path / "train.tgt").write_text("c b a\ne d\ni h g f\n" * 20, encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("a b\tb a\nc d\td c\n", encoding="utf-8")
    (tmp_path / "news.tsv").write_text("e f\tf e\n", encoding="utf-8")
    cfg = validate_config(
        {
            "data": {
                "dataset": "parallel",
                "tokenizer": "word",
                "files": {
                    "train": {
                        "src": str(tmp_path / "train.src"),
                        "tgt": str(tmp_path / "train.tgt"),
                    },
                    "val": {"tsv": str(tmp_path / "dev.tsv")},
                    "news": {"tsv": str(tmp_path / "news.tsv")},
                },
            }
        }
    )
    assert evaluation_splits(cfg.data) == ["news"]
    data = prepare_data(cfg.data, cache_dir=tmp_path / "cache")
    assert len(data.train) == 60 and len(data.val) == 2
    assert data.tests["news"].src == ["e f"] and data.tests["news"].tgt == ["f e"]
    assert (
        data.src_tok.encode("a b") and data.tgt_tok.decode(data.tgt_tok.encode("c b a")) == "c b a"
    )


def test_a_user_corpus_without_the_split_says_which_entry_to_add(tmp_path):
    cfg = validate_config({"data": {"dataset": "parallel", "files": {}}})
    with pytest.raises(UserError, match=r"data.files has no 'train' entry.*add data.files.train"):
        load_split(cfg.data, "train")


def test_file_pair_needs_one_form():
    with pytest.raises(UserError, match="either both 'src' and 'tgt', or 'tsv'"):
        validate_config({"data": {"files": {"train": {"src": "a.txt"}}}})


@pytest.mark.parametrize(("src", "tgt"), [("fr", "cs"), ("de", "en"), ("cs", "fr")])
def test_any_multi30k_pair_with_limits(shared_data, src, tgt):
    cfg = validate_config(
        {"data": {"src_lang": src, "tgt_lang": tgt, "data_dir": str(shared_data),
                  "train_limit": 50, "test_limit": 7, "test_splits": ["test_2016_flickr"]}}
    )  # fmt: skip
    assert len(load_split(cfg.data, "train")) == 50
    test = load_split(cfg.data, "test_2016_flickr")
    assert len(test) == 7 and test.name == f"multi30k/test_2016_flickr/{src}-{tgt}"


def test_flores_as_an_out_of_domain_test_split(shared_data):
    cfg = validate_config({"data": {"data_dir": str(shared_data), "test_splits": ["flores200"]}})
    assert len(load_split(cfg.data, "flores200")) == 1012


def test_synthetic_test_split_may_be_longer_than_training():
    cfg = validate_config(
        {"data": {"dataset": "synthetic",
                  "synthetic": {"n_test": 30, "min_len": 3, "max_len": 5, "test_max_len": 9}}}
    )  # fmt: skip
    train = load_split(cfg.data, "train")
    test = load_split(cfg.data, "test")
    assert max(len(s.split()) for s in train.src) <= 5
    assert max(len(s.split()) for s in test.src) > 5
    assert evaluation_splits(cfg.data) == ["test"]
