"""The layering docs/ARCHITECTURE.md promises, checked on every import statement (function-local ones too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import statement in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py")]


# Layer -> the top-level packages it must never import.
FORBIDDEN = {
    "cnnviz": ("streamlit", "ui", "pages", "app"),
    "ui": ("pages", "app"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    for path in _files(layer):
        for module, _ in _imports(path):
            assert module.split(".")[0] not in FORBIDDEN[layer], f"{path.relative_to(ROOT)} imports {module}"


def test_only_the_cli_imports_the_cli_and_nothing_imports_the_use_cases_from_below():
    for path in _files("cnnviz"):
        relative = path.relative_to(ROOT).as_posix()
        for module, names in _imports(path):
            if module.startswith("cnnviz.cli") or (module == "cnnviz" and "cli" in names):
                assert relative.startswith(("cnnviz/cli/", "cnnviz/__main__.py")), relative
            if module == "cnnviz.runs" or (module == "cnnviz" and "runs" in names):
                # The use cases sit above the library: only the CLI (and the public face) import them.
                assert relative.startswith("cnnviz/cli/") or relative == "cnnviz/__init__.py", relative


def test_no_module_imports_another_modules_private_names():
    for path in _files("cnnviz", "ui", "pages") + [ROOT / "app.py"]:
        for module, names in _imports(path):
            if module.split(".")[0] in ("cnnviz", "ui"):
                private = [name for name in names if name.startswith("_") and not name.endswith("__")]
                assert not private, f"{path.relative_to(ROOT)} imports {private} from {module}"


def test_pages_hold_layout_and_call_no_training_or_evaluation_themselves():
    for path in _files("pages"):
        text = path.read_text()
        for call in ("cnnviz.train(", "cnnviz.evaluate(", "cnnviz.compare(", "runs.run(", "keras."):
            assert call not in text, f"{path.name} calls {call}"
