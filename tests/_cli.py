"""Running `attnbench` in-process, as a user's shell would, for the CLI tests."""

from __future__ import annotations

import sys

import pytest

from attnbench import cli


def run_cli(argv: list[str], monkeypatch, capsys) -> tuple[int | str | None, str, str]:
    """`attnbench <argv>` through `cli.main` -> (exit code, stdout, stderr) of that call only."""
    capsys.readouterr()  # drop what building the inputs printed
    monkeypatch.setattr(sys, "argv", ["attnbench", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err
