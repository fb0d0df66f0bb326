"""The YAML presets shipped with attnbench; light (no pydantic), so `--help` can list them."""

from __future__ import annotations

from importlib import resources


def preset_names() -> list[str]:
    """Names of the YAML presets shipped in the package (attnbench/configs/*.yaml)."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of the shipped preset `name` (one of `preset_names()`)."""
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
