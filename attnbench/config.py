"""Experiment configuration: YAML validated by pydantic, unknown keys rejected.

The resolved config (preset + file + --set overrides) is what a run logs and stores in its
checkpoints, so any result can be traced to the exact settings that made it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from attnbench.configs import preset_names, preset_text
from attnbench.errors import UserError

#: names become folder and experiment names: no separators, no leading dot
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticConfig(_Strict):
    """A generated task: the long-sequence quality probe (exact match vs length)."""

    task: Literal["copy", "reverse", "sort"] = "reverse"
    n_train: int = Field(5000, gt=0)
    n_val: int = Field(200, gt=0)
    n_test: int = Field(200, gt=0)
    min_len: int = Field(5, ge=1)
    max_len: int = Field(20, ge=1)
    #: test lengths may exceed training lengths to probe length generalisation
    test_max_len: int | None = Field(None, ge=1)
    vocab_size: int = Field(20, ge=2)


class FilePair(_Strict):
    """A user corpus split: two aligned files, or one TSV file (source<TAB>target)."""

    src: Path | None = None
    tgt: Path | None = None
    tsv: Path | None = None

    @model_validator(mode="after")
    def _one_form(self) -> FilePair:
        if (self.tsv is None) == (self.src is None or self.tgt is None):
            raise ValueError("give either both 'src' and 'tgt', or 'tsv'")
        return self


class DataConfig(_Strict):
    dataset: Literal["multi30k", "parallel", "synthetic"] = "multi30k"
    src_lang: str = "en"
    tgt_lang: str = "de"
    #: local copy of the corpora (folder with multi30k/ and flores200/); None: $ATTNBENCH_DATA_DIR,
    #: else download from upstream into the cache
    data_dir: Path | None = None
    #: evaluated after training; multi30k splits, plus "flores200" (out of domain, en/de only)
    test_splits: list[str] = ["test_2016_flickr"]
    #: use only the first N pairs (quick runs); None = all
    train_limit: int | None = Field(None, gt=0)
    val_limit: int | None = Field(None, gt=0)
    test_limit: int | None = Field(None, gt=0)
    #: dataset "parallel": split name -> files; needs "train" and "val"
    files: dict[str, FilePair] = {}
    synthetic: SyntheticConfig = SyntheticConfig()
    tokenizer: Literal["unigram", "bpe", "word"] = "bpe"
    src_vocab_size: int = Field(8000, ge=8)
    tgt_vocab_size: int = Field(8000, ge=8)
    #: training pairs longer than this (in subwords) are truncated
    max_len: int = Field(100, ge=1)


class ModelConfig(_Strict):
    """The Seq2Seq model. Only `attention` (and attn_dim) may differ between compared runs."""

    attention: str = "additive"
    attn_dim: int | None = Field(None, gt=0)
    num_heads: int = Field(1, gt=0)
    decoder: Literal["bahdanau", "luong"] = "luong"
    input_feeding: bool = False
    rnn: Literal["gru", "lstm"] = "gru"
    emb_dim: int = Field(256, gt=0)
    #: decoder state size; each encoder direction gets half, so dot attention always fits
    hidden_dim: int = Field(256, gt=0)
    enc_layers: int = Field(1, gt=0)
    dec_layers: int = Field(1, gt=0)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    #: additive attention only: score keys in chunks of this size to bound memory
    chunk_size: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _even_hidden(self) -> ModelConfig:
        if self.hidden_dim % 2:
            raise ValueError(
                f"hidden_dim must be even (bidirectional encoder), got {self.hidden_dim}"
            )
        return self


class TrainConfig(_Strict):
    epochs: int = Field(10, gt=0)
    #: batches hold about this many (padded) tokens; set batch_size instead for fixed batches
    batch_tokens: int | None = Field(4000, gt=0)
    batch_size: int | None = Field(None, gt=0)
    lr: float = Field(1e-3, gt=0)
    #: multiply lr by this when the validation metric stops improving
    lr_decay: float = Field(0.5, gt=0, le=1.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    clip_norm: float | None = Field(1.0, gt=0)
    #: stop after this many epochs without a better validation metric
    patience: int = Field(3, gt=0)
    select_metric: Literal["bleu", "loss"] = "bleu"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: mixed precision; only used on CUDA
    amp: bool = True
    #: stop after this many minutes of training + validation (checked after each epoch)
    max_minutes: float | None = Field(None, gt=0)
    #: CPU threads for torch; None leaves torch's default
    num_threads: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_batching(self) -> TrainConfig:
        if self.batch_size is not None and self.batch_tokens is not None:
            raise ValueError("set only one of batch_tokens and batch_size (set the other to null)")
        if self.batch_size is None and self.batch_tokens is None:
            raise ValueError("set one of batch_tokens and batch_size")
        return self


class EvalConfig(_Strict):
    beam_size: int = Field(5, gt=0)
    #: GNMT length penalty exponent alpha: lp = ((5 + |Y|) / 6) ** alpha
    length_penalty: float = Field(0.6, ge=0.0)
    #: maximum output length = max_len_a * source length + max_len_b
    max_len_a: float = Field(1.5, ge=0.0)
    max_len_b: int = Field(10, ge=1)
    batch_size: int = Field(128, gt=0)
    #: source-length bucket edges (subwords) for BLEU by length
    length_buckets: list[int] = [10, 20, 30, 50]
    #: bootstrap resamples n for paired significance. No p is below 1 / (n + 1), and the
    #: reports' Holm correction multiplies the smallest by the number of tests m (variants
    #: other than the baseline x seeds), so nothing reads significant at 0.05 unless
    #: n + 1 > 20 m: raise it for large grids (1000 allows m <= 50)
    bootstrap_samples: int = Field(1000, gt=0)


class ParamSpace(_Strict):
    """One tuned setting: a float/int range (optionally log-scaled) or a list of choices."""

    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter needs low <= high")
        elif self.log and self.low <= 0:
            raise ValueError("a log-scaled parameter needs low > 0")
        return self


def _default_space() -> dict[str, ParamSpace]:
    return {
        "train.lr": ParamSpace(type="float", low=3e-4, high=5e-3, log=True),
        "model.dropout": ParamSpace(type="float", low=0.0, high=0.4),
        "train.label_smoothing": ParamSpace(type="float", low=0.0, high=0.2),
    }


class TuneConfig(_Strict):
    """Optuna: the same space, trial budget and epoch budget for every attention variant."""

    n_trials: int = Field(8, gt=0)
    #: what trials optimise: validation BLEU (maximised) or loss (minimised; steadier when
    #: trials are too short for BLEU to separate settings)
    metric: Literal["val/bleu", "val/loss"] = "val/bleu"
    #: epochs per trial; None = train.epochs
    epochs: int | None = Field(None, gt=0)
    sampler_seed: int = 0
    pruner: Literal["median", "hyperband", "none"] = "median"
    #: trials that must complete before the median pruner prunes anything
    startup_trials: int = Field(2, ge=0)
    #: dotted config key -> range; every variant gets exactly this space
    space: dict[str, ParamSpace] = Field(default_factory=_default_space)
    #: None: an Optuna journal file in the workdir; or an RDB URL (postgresql+psycopg2://...)
    storage: str | None = None
    #: when workers share a study, how long to wait for their running trials before choosing
    #: the best one
    wait_minutes: float = Field(60.0, ge=0)

    @field_validator("storage")
    @classmethod
    def _known_storage(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("journal:", "postgresql", "mysql", "sqlite")):
            raise ValueError(
                "use null (journal file in the workdir), 'journal:/path/file' or an RDB URL "
                "such as postgresql+psycopg2://user@host/db"
            )
        return url


class BenchmarkConfig(_Strict):
    """The comparison grid: datasets x attention variants x seeds; only the score changes."""

    variants: list[str] = ["additive", "dot", "general", "scaled_dot"]
    #: the variant the others are tested against (paired bootstrap)
    baseline: str = "additive"
    seeds: list[int] = [1, 2, 3]
    #: extra datasets beside `data`, by name (e.g. a synthetic task); `data` is always "main"
    datasets: dict[str, DataConfig] = {}

    @model_validator(mode="after")
    def _safe_dataset_names(self) -> BenchmarkConfig:
        for name in self.datasets:
            if not re.match(SAFE_NAME, name) or name == "main":
                raise ValueError(
                    f"dataset name {name!r} must be letters, digits, '.', '_' or '-' (not 'main')"
                )
        return self

    #: sentences whose attention maps are logged and drawn for every variant
    attention_maps: int = Field(4, ge=0)
    #: long-sequence step (attnbench.bench): T_q = T_k values of the implementation grid
    bench_lengths: list[Annotated[int, Field(gt=0)]] = [64, 256, 1024]
    bench_batch: int = Field(8, gt=0)
    #: per-head scoring dimension (a for additive, d for multiplicative)
    bench_dim: int = Field(128, gt=0)
    bench_heads: int = Field(1, gt=0)
    #: "auto" follows train.device
    bench_device: Literal["auto", "cpu", "cuda"] = "auto"
    #: None: float32 on CPU, bfloat16 on CUDA
    bench_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    #: attention alone forward, forward + backward, and the full model (train step, decoding)
    bench_modes: list[Literal["forward", "backward", "model"]] = ["forward"]
    #: names from attnbench.bench.implementations; None = every one that runs on the device
    bench_implementations: list[str] | None = None
    bench_max_backward_length: int = Field(1024, gt=0)
    #: total budget of the step; cells after it are recorded as skipped
    bench_max_seconds: float = Field(120.0, gt=0)
    #: timed seconds per cell (each also caps a limit's timed trials); None: a quarter of
    #: bench_max_seconds, at most 20
    bench_cell_seconds: float | None = Field(None, gt=0)


class SweepConfig(_Strict):
    """The attention-dimension sweep of Britz et al. (2017, Table 6): every variant of
    `benchmark.variants` is trained with `model.attn_dim` set to each value, with every seed of
    `benchmark.seeds` and no tuning, so the dimension is the only thing that varies in a row."""

    attn_dims: list[Annotated[int, Field(gt=0)]] = []
    #: held-out pairs on which the mean |raw score| and the attention entropy are measured
    mechanism_sentences: int = Field(500, gt=0)


class ExperimentConfig(_Strict):
    #: names the MLflow experiment (attnbench-<name>), run folders and reports
    name: str = "attnbench"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not re.match(SAFE_NAME, name):
            raise ValueError("use 1-64 letters, digits, '.', '_' or '-' (it names folders)")
        return name

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tune: TuneConfig = TuneConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    sweep: SweepConfig = SweepConfig()


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(
            f"{origin}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from exc
    if not isinstance(data, dict):
        raise UserError(
            f"{origin}: expected a mapping of settings at the top, got {type(data).__name__}"
        )
    return data


def _apply_override(tree: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set '{assignment}': expected key=value, e.g. --set train.epochs=3")
    node = tree
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"--set '{assignment}': '{part}' is a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise UserError(f"--set '{assignment}': value is not valid YAML") from exc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: Path | None = None,
    preset: str | None = None,
    overrides: list[str] | None = None,
    options: dict[str, str] | None = None,
) -> ExperimentConfig:
    """Preset, then file, then `key=value` overrides; the first invalid value becomes one line.

    `options` names the command-line option behind an override's key (e.g.
    {"benchmark.bench_dtype": "--dtype"}), so its error names what the user typed.
    """
    tree: dict[str, Any] = {}
    origin = "config"
    if preset is not None:
        names = preset_names()
        if preset not in names:
            raise UserError(f"unknown preset '{preset}'; choose one of: {', '.join(names)}")
        text = preset_text(preset)
        tree = _read_yaml(text, f"preset {preset}")
        origin = f"preset {preset}"
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise UserError(f"config file {path} is a folder; pass a YAML file")
        if not path.is_file():
            raise UserError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"config file {path} is not UTF-8 text") from exc
        tree = _merge(tree, _read_yaml(text, str(path)))
        origin = str(path)
    set_by = {}
    for assignment in overrides or []:
        _apply_override(tree, assignment)
        key, _, value = assignment.partition("=")
        option = (options or {}).get(key.strip())
        set_by[key.strip()] = f"{option} {value}" if option else f"--set '{assignment}'"
    return validate_config(tree, origin, set_by)


def validate_config(
    tree: dict[str, Any], origin: str = "config", set_by: dict[str, str] | None = None
) -> ExperimentConfig:
    """Validate a settings tree; report the first problem as `origin: key.path: message`,
    where origin is the `--set` that gave the value if one did (`set_by`: key -> what set it),
    so the user is pointed at what they typed rather than at the preset under it."""
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        for key, setter in (set_by or {}).items():
            if where == key or where.startswith(key + "."):
                origin = setter
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting; {_known_settings(err['loc'])}"
        got = err.get("input")
        shown = (
            "" if err["type"] == "extra_forbidden" or isinstance(got, dict) else f" (got {got!r})"
        )
        more = f"; and {len(exc.errors()) - 1} more" if len(exc.errors()) > 1 else ""
        raise UserError(f"{origin}: {where}: {msg}{shown}{more}") from exc


def _known_settings(loc: tuple[str | int, ...]) -> str:
    """The nearest valid name beside an unknown one, else all of them: `--help` lists no
    config keys, so the error is where a user learns them."""
    import difflib

    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return "see attnbench/configs/*.yaml for the settings"
        model = annotation
    names = sorted(model.model_fields)
    prefix = "".join(f"{part}." for part in loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    if close:
        return f"did you mean {prefix}{close[0]}?"
    return f"the settings here: {', '.join(prefix + n for n in names)}"


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain JSON-safe dict (paths as strings): what checkpoints and trackers store."""
    return cfg.model_dump(mode="json")
