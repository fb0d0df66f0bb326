"""Corpus readers, Multi30k / FLORES loading, checksums and downloads (no network)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from attnbench.data import (
    FLORES_SHA256,
    MULTI30K_LANGS,
    MULTI30K_SHA256,
    MULTI30K_SPLITS,
    download_file,
    load_flores,
    load_multi30k,
    read_parallel,
    read_tsv,
)
from attnbench.data import multi30k as multi30k_mod
from attnbench.errors import UserError

SPLIT_LINES = {
    "train": 29000,
    "val": 1014,
    "test_2016_flickr": 1000,
    "test_2017_flickr": 1000,
    "test_2017_mscoco": 461,
    "test_2018_flickr": 1071,
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATTNBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "cache"))


def _one_line_error(excinfo: pytest.ExceptionInfo[UserError], *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


# --- read_parallel / read_tsv -------------------------------------------------------------


def test_read_parallel_plain_and_gz(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\nworld\r\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("hallo\nWelt\u2028x\n")
    c = read_parallel(tmp_path / "a.txt", tmp_path / "b.txt.gz", name="toy")
    assert c.name == "toy"
    assert c.src == ["hello", "world"]
    assert c.tgt == ["hallo", "Welt\u2028x"]  # U+2028 is not a line break here
    assert len(c) == 2
    h = c.head(1)
    assert (h.name, h.src, h.tgt) == ("toy", ["hello"], ["hallo"])


def test_read_parallel_mismatched_counts(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "tgt.txt").write_text("x\ny\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_parallel(tmp_path / "src.txt", tmp_path / "tgt.txt")
    _one_line_error(e, "src.txt", "tgt.txt", "3", "2")


def test_read_parallel_empty(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(UserError) as e:
        read_parallel(tmp_path / "src.txt", tmp_path / "empty.txt")
    _one_line_error(e, "empty.txt", "empty")


def test_read_parallel_empty_gz(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "e.gz", "wb"):
        pass
    with pytest.raises(UserError) as e:
        read_parallel(tmp_path / "e.gz", tmp_path / "e.gz")
    _one_line_error(e, "e.gz", "empty")


def test_read_parallel_missing(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("a\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_parallel(tmp_path / "src.txt", tmp_path / "nope.txt")
    _one_line_error(e, "nope.txt", "not found")


def test_read_parallel_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes("ok\nok\nM\u00fcller\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        read_parallel(tmp_path / "src.txt", tmp_path / "latin.txt")
    _one_line_error(e, "latin.txt", "line 3", "UTF-8")


def test_read_parallel_bad_gzip(tmp_path: Path) -> None:
    (tmp_path / "fake.gz").write_bytes(b"not gzip at all\n")
    with pytest.raises(UserError) as e:
        read_parallel(tmp_path / "fake.gz", tmp_path / "fake.gz")
    _one_line_error(e, "fake.gz", "gzip")


def test_read_tsv(tmp_path: Path) -> None:
    (tmp_path / "pairs.tsv").write_text("a b\tx y\n\tempty source\n", encoding="utf-8")
    c = read_tsv(tmp_path / "pairs.tsv")
    assert c.name == "pairs"
    assert c.src == ["a b", ""]
    assert c.tgt == ["x y", "empty source"]


@pytest.mark.parametrize("bad", ["no tab here", "one\ttwo\tthree"])
def test_read_tsv_bad_line(tmp_path: Path, bad: str) -> None:
    (tmp_path / "pairs.tsv").write_text(f"a\tb\n{bad}\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_tsv(tmp_path / "pairs.tsv")
    _one_line_error(e, "pairs.tsv", "line 2", "tab")


def test_read_tsv_empty_and_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "empty.tsv").write_bytes(b"")
    with pytest.raises(UserError) as e:
        read_tsv(tmp_path / "empty.tsv")
    _one_line_error(e, "empty.tsv")
    (tmp_path / "bad.tsv").write_bytes(b"a\tb\n\xff\tc\n")
    with pytest.raises(UserError) as e:
        read_tsv(tmp_path / "bad.tsv")
    _one_line_error(e, "bad.tsv", "line 2")


# --- Multi30k -----------------------------------------------------------------------------


def test_table_matches_sha256sums(shared_data: Path) -> None:
    for folder, table in (("multi30k", MULTI30K_SHA256), ("flores200", FLORES_SHA256)):
        lines = (shared_data / folder / "SHA256SUMS").read_text().split("\n")
        sums = {name: digest for digest, name in (ln.split() for ln in lines if ln.strip())}
        assert sums == table


@pytest.mark.parametrize("split", MULTI30K_SPLITS)
def test_multi30k_en_de_counts(shared_data: Path, split: str) -> None:
    c = load_multi30k(split, "en", "de", data_dir=shared_data)
    assert c.name == f"multi30k/{split}/en-de"
    assert len(c) == SPLIT_LINES[split]
    assert all(c.src) and all(c.tgt)


def test_multi30k_every_file_in_table_loads(shared_data: Path) -> None:
    for fname in MULTI30K_SHA256:
        split, lang, _ = fname.split(".")
        other = "de" if lang == "en" else "en"
        c = load_multi30k(split, lang, other, data_dir=shared_data / "multi30k")
        assert len(c) == SPLIT_LINES[split]


def test_multi30k_cs_availability(shared_data: Path) -> None:
    cs_splits = {f.split(".")[0] for f in MULTI30K_SHA256 if ".cs." in f}
    assert cs_splits == {"train", "val", "test_2016_flickr", "test_2018_flickr"}
    for split in ("test_2017_flickr", "test_2017_mscoco"):
        with pytest.raises(UserError) as e:
            load_multi30k(split, "en", "cs", data_dir=shared_data)
        _one_line_error(e, "'cs'", split, "train, val, test_2016_flickr, test_2018_flickr")


@pytest.mark.parametrize(
    ("split", "src", "tgt", "needle"),
    [
        ("test", "en", "de", "test_2016_flickr"),
        ("val", "en", "xx", "en, de, fr, cs"),
        ("val", "de", "de", "different"),
    ],
)
def test_multi30k_bad_args(split: str, src: str, tgt: str, needle: str) -> None:
    with pytest.raises(UserError) as e:
        load_multi30k(split, src, tgt, data_dir=Path("/nonexistent"))
    _one_line_error(e, needle)
    assert set(MULTI30K_LANGS) == {"en", "de", "fr", "cs"}


def test_multi30k_data_dir_forms_and_env(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = load_multi30k("val", "de", "en", data_dir=shared_data)
    direct = load_multi30k("val", "de", "en", data_dir=shared_data / "multi30k")
    assert parent == direct
    assert parent.src[0] != parent.tgt[0]
    for value in (shared_data, shared_data / "multi30k"):
        monkeypatch.setenv("ATTNBENCH_DATA_DIR", str(value))
        assert load_multi30k("val", "de", "en") == parent


def test_multi30k_missing_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError) as e:
        load_multi30k("val", "en", "de", data_dir=tmp_path / "missing")
    _one_line_error(e, str(tmp_path / "missing"), "ATTNBENCH_DATA_DIR=../shared/data")
    monkeypatch.setenv("ATTNBENCH_DATA_DIR", str(tmp_path))  # exists but has no files
    with pytest.raises(UserError) as e:
        load_multi30k("val", "en", "de")
    _one_line_error(e, str(tmp_path / "val.en.gz"), "ATTNBENCH_DATA_DIR", "remove")


def test_multi30k_corrupt_file(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "multi30k"
    folder.mkdir()
    for lang in ("en", "de"):
        shutil.copy(shared_data / "multi30k" / f"val.{lang}.gz", folder)
    raw = bytearray((folder / "val.de.gz").read_bytes())
    raw[100] ^= 0xFF
    (folder / "val.de.gz").write_bytes(bytes(raw))
    with pytest.raises(UserError) as e:
        load_multi30k("val", "en", "de", data_dir=tmp_path)
    actual = hashlib.sha256(bytes(raw)).hexdigest()
    _one_line_error(e, "val.de.gz", MULTI30K_SHA256["val.de.gz"], actual, "delete it")


def test_multi30k_download_into_cache(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No local copy configured: files are fetched (here from a file:// mirror) and cached."""
    mirror = (shared_data / "multi30k").as_uri() + "/{split}.{lang}.gz"
    monkeypatch.setattr(multi30k_mod, "MULTI30K_URL", mirror)
    c = load_multi30k("test_2017_mscoco", "fr", "en", cache_dir=tmp_path / "dl")
    assert len(c) == 461
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [
        "test_2017_mscoco.en.gz",
        "test_2017_mscoco.fr.gz",
    ]
    default = load_multi30k("test_2017_mscoco", "fr", "en")  # $ATTNBENCH_CACHE_DIR/multi30k
    assert default == c
    assert (tmp_path / "cache" / "multi30k" / "test_2017_mscoco.fr.gz").is_file()


# --- FLORES -------------------------------------------------------------------------------


def test_flores(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = load_flores("en", "de", data_dir=shared_data)
    assert c.name == "flores200/devtest/en-de"
    assert len(c) == 1012
    assert load_flores("en", "de", data_dir=shared_data / "flores200") == c
    monkeypatch.setenv("ATTNBENCH_DATA_DIR", str(shared_data))
    rev = load_flores("de", "en")
    assert (rev.src, rev.tgt) == (c.tgt, c.src)
    with pytest.raises(UserError) as e:
        load_flores("en", "fr")
    _one_line_error(e, "'fr'", "de, en")
    with pytest.raises(UserError):
        load_flores("en", "en")


# --- download -----------------------------------------------------------------------------


def test_download_file_url(tmp_path: Path) -> None:
    payload = b"some bytes\n" * 1000
    src = tmp_path / "remote.bin"
    src.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "local.bin"
    assert download_file(src.as_uri(), dest, digest) == dest
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["local.bin"]


def test_download_bad_hash_and_unreachable(tmp_path: Path) -> None:
    src = tmp_path / "remote.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "out" / "local.bin"
    with pytest.raises(UserError) as e:
        download_file(src.as_uri(), dest, "0" * 64, retries=2, backoff_s=0)
    _one_line_error(e, src.as_uri(), "ATTNBENCH_DATA_DIR", "0" * 64)
    assert list(dest.parent.iterdir()) == []  # nothing half-written is left behind
    missing = (tmp_path / "missing.bin").as_uri()
    with pytest.raises(UserError) as e:
        download_file(missing, dest, "0" * 64, retries=1, backoff_s=0)
    _one_line_error(e, "could not download", missing)
