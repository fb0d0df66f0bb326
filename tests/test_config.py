"""Configs: presets validate, overrides apply, mistakes become one precise line."""

from __future__ import annotations

import pytest

from attnbench.config import ExperimentConfig, load_config, preset_names
from attnbench.errors import UserError


def test_presets_exist_and_validate():
    names = preset_names()
    assert {"quick", "multi30k-cpu"} <= set(names)
    for name in names:
        cfg = load_config(preset=name)
        assert isinstance(cfg, ExperimentConfig) and cfg.name == name


def test_file_then_overrides_win_over_the_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\nmodel:\n  attention: dot\n")
    cfg = load_config(path, "quick", ["train.lr=0.5", "data.test_splits=[val]"])
    assert cfg.train.epochs == 7 and cfg.model.attention == "dot"
    assert cfg.train.lr == 0.5 and cfg.data.test_splits == ["val"]
    assert cfg.model.hidden_dim == 128  # the rest of the preset is kept


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        (
            "model:\n  hiden_dim: 3\n",
            [],
            r"model\.hiden_dim: unknown setting; did you mean model\.hidden_dim\?$",
        ),
        (
            "eval:\n  zzz: 1\n",
            [],
            r"eval\.zzz: unknown setting; the settings here: eval\.batch_size, eval\.beam_size",
        ),
        ("", ["zzz=1"], r"^--set 'zzz=1': zzz: unknown setting; the settings here: benchmark,"),
        ("train:\n  epochs: -1\n", [], r"train\.epochs: Input should be greater than 0 \(got -1\)"),
        ("train:\n  epochs: many\n", [], r"train\.epochs: Input should be a valid integer"),
        ("model:\n  hidden_dim: 15\n", [], r"hidden_dim must be even"),
        ("train: [1, 2\n", [], r"line \d+: not valid YAML"),
        ("- a\n- b\n", [], r"expected a mapping"),
        ("", ["train.epochs"], r"expected key=value"),
        ("train:\n  epochs: 3\n", ["train.epochs.x=1"], r"'epochs' is a value, not a section"),
        ("train:\n  batch_size: 8\n", [], r"set only one of batch_tokens and batch_size"),
    ],
)
def test_bad_configs_give_one_line(tmp_path, text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_config(path, overrides=overrides)
    assert "\n" not in str(info.value)


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=r"unknown preset 'fast'; choose one of: .*quick"):
        load_config(preset="fast")
