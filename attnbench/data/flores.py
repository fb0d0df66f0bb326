"""FLORES-200 devtest (German, English): the out-of-domain test set.

CC-BY-SA; cite the NLLB team, "No Language Left Behind" (2022).
"""

from __future__ import annotations

from pathlib import Path

from attnbench.data.corpus import ParallelCorpus, read_parallel
from attnbench.data.sources import fetch_file
from attnbench.errors import UserError

FLORES_FILES: dict[str, str] = {"de": "flores200-devtest.deu", "en": "flores200-devtest.eng"}
FLORES_LANGS = tuple(FLORES_FILES)
# Used only when no local copy is configured (data_dir / ATTNBENCH_DATA_DIR).
FLORES_URL = (
    "https://raw.githubusercontent.com/Helsinki-NLP/OPUS-MT-testsets/master/testsets/"
    "flores200/devtest/{fname}"
)
# Copied from shared/data/flores200/SHA256SUMS.
FLORES_SHA256: dict[str, str] = {
    "flores200-devtest.deu": "9a1bfa90d153fedb7ff80047f4a63d493998888eddb056e8a28e24592f26e5f2",
    "flores200-devtest.eng": "612e9fbe87997617c0fa8fa8929654a4f49b728d96738112c2b86ef6a1d78d88",
}


def load_flores(
    src_lang: str,
    tgt_lang: str,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> ParallelCorpus:
    """Load FLORES-200 devtest as a corpus named like `flores200/devtest/en-de`.

    Same resolution as `load_multi30k`: `data_dir` (the `flores200` folder or its parent),
    else `$ATTNBENCH_DATA_DIR`, else download into `cache_dir`.
    """
    for lang in (src_lang, tgt_lang):
        if lang not in FLORES_FILES:
            raise UserError(
                f"unknown FLORES language {lang!r}; choose from {', '.join(FLORES_LANGS)}"
            )
    if src_lang == tgt_lang:
        raise UserError(
            f"source and target language are both {src_lang!r}; choose two different ones "
            f"from {', '.join(FLORES_LANGS)}"
        )
    paths = []
    for lang in (src_lang, tgt_lang):
        fname = FLORES_FILES[lang]
        url = FLORES_URL.format(fname=fname)
        paths.append(fetch_file("flores200", fname, url, FLORES_SHA256[fname], data_dir, cache_dir))
    return read_parallel(paths[0], paths[1], name=f"flores200/devtest/{src_lang}-{tgt_lang}")
