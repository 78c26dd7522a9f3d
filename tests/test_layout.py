"""The layout's rules (docs/DESIGN.md): one folder per stage, nodes that reach their stage's work in
one hop, no import cycle in core/, and files and functions small enough to read."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fer_pipeline"
CORE = PACKAGE / "core"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 70
#: pipelines/<stage> -> the core package that does its work (package_model's work is the
#: logged model, kedro_glue.served_model)
STAGE_PACKAGES = {"ingestion": "ingestion", "class_balance": "class_balance", "autoencoder": "autoencoder",
                  "augmentation": "augmentation", "training": "training", "evaluate": "evaluation",
                  "predict": "predict", "serving": "serving"}


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level, inside ``if TYPE_CHECKING:`` blocks included (not inside
    functions: those are the lazy imports a module makes when it needs them)."""
    found: set[str] = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def test_no_file_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE)): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"split these files (> {MAX_FILE_LINES} lines): {long}"


def test_no_function_over_the_line_limit():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = node.end_lineno - start + 1
    assert not long, f"split these functions (> {MAX_FUNCTION_LINES} lines): {long}"


def test_core_has_no_import_cycle_and_no_kedro_or_mlflow():
    modules = {_module_name(p): p for p in CORE.rglob("*.py")}
    graph = {name: {m for m in _top_level_imports(path) if m in modules and m != name}
             for name, path in modules.items()}
    for name, path in modules.items():
        framework = {m for m in _top_level_imports(path) if m.split(".")[0] in ("kedro", "mlflow")}
        assert not framework, f"{name} imports {framework} (core/ is Kedro- and MLflow-free)"
    done, stack = set(), []

    def visit(name):
        if name in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(name):], name]))
        if name in done:
            return
        stack.append(name)
        for target in graph[name]:
            visit(target)
        stack.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_a_cycle_would_be_found(tmp_path, monkeypatch):
    """The cycle check above can fail: two modules importing each other under TYPE_CHECKING."""
    fake = tmp_path / "fer_pipeline" / "core"
    fake.mkdir(parents=True)
    (fake / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fer_pipeline.core.b import x\n")
    (fake / "b.py").write_text("from fer_pipeline.core.a import y\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE", tmp_path / "fer_pipeline")
    monkeypatch.setattr(this, "CORE", fake)
    with pytest.raises(AssertionError, match="import cycle"):
        test_core_has_no_import_cycle_and_no_kedro_or_mlflow()


@pytest.mark.parametrize("stage", sorted(STAGE_PACKAGES))
def test_each_node_module_imports_its_stage_work_from_its_core_package(stage):
    imports = _top_level_imports(PACKAGE / "pipelines" / stage / "nodes.py")
    own = f"fer_pipeline.core.{STAGE_PACKAGES[stage]}"
    assert any(m == own or m.startswith(own + ".") for m in imports), f"pipelines/{stage}/nodes.py: {sorted(imports)}"


def test_every_pipeline_folder_has_its_core_package_and_no_stages_module_remains():
    pipelines = {p.name for p in (PACKAGE / "pipelines").iterdir() if (p / "pipeline.py").is_file()}
    assert pipelines == {*STAGE_PACKAGES, "package_model"}
    assert all((CORE / package / "__init__.py").is_file() for package in STAGE_PACKAGES.values())
    assert not list(PACKAGE.rglob("stages.py"))


def test_the_files_run_first_exist_once_each():
    """tests/conftest.py's HEAVY_FILES_FIRST: a renamed or moved file would silently go back to
    its place in collection order (possibly last, keeping one worker busy alone)."""
    from tests.conftest import HEAVY_FILES_FIRST

    root = PACKAGE.parents[1]
    assert [name for name in HEAVY_FILES_FIRST if not (root / name).is_file()] == []
    assert len(set(HEAVY_FILES_FIRST)) == len(HEAVY_FILES_FIRST)
