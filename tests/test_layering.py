"""Architecture rules from DESIGN.md, checked on the source: the library never imports
Prefect, and only `attnbench/tracking.py` imports MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "attnbench"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_never_imports_prefect_and_only_tracking_imports_mlflow():
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        mods = imported_modules(path)
        assert "prefect" not in mods, f"{path} imports prefect"
        if path.name != "tracking.py":
            assert "mlflow" not in mods, f"{path} imports mlflow"
    assert imported_modules(Path(__file__)) >= {"ast"}  # the parser sees imports at all
