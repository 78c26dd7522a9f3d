"""Where the Kedro project is: commands run from anywhere inside it find its conf/ and data/."""

from __future__ import annotations

from pathlib import Path


def is_project(folder: Path) -> bool:
    """True when ``folder/pyproject.toml`` has a ``[tool.kedro]`` table."""
    pyproject = folder / "pyproject.toml"
    try:
        return pyproject.is_file() and "[tool.kedro]" in pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that is a Kedro project
    (``is_project``); ``start`` itself when there is none."""
    start = (start or Path.cwd()).resolve()
    return next((folder for folder in (start, *start.parents) if is_project(folder)), start)


def project_root() -> Path:
    """The project a command acts on: the one around the working directory, else the checkout
    this package is run from (``src/fer_pipeline`` -> the repository), else the working directory."""
    found = find_project_root()
    if is_project(found):
        return found
    checkout = Path(__file__).resolve().parents[2]
    return checkout if is_project(checkout) else found


def environment_data_roots(root: Path) -> dict[str, Path]:
    """Each Kedro environment's ``data_root`` (``conf/<env>/globals.yml``) under project ``root``,
    as absolute paths; the base environment's under ``"base"``."""
    from fer_pipeline.params import read_yaml_file

    roots = {}
    for path in sorted((root / "conf").glob("*/globals.yml")):
        data_root = (read_yaml_file(path) or {}).get("data_root")
        if data_root:
            roots[path.parent.name] = root / data_root
    return roots


def catalog_file(root: Path, name: str, env: str = "base") -> Path:
    """Where catalog entry ``name`` of project ``root`` lives in environment ``env``: its
    ``filepath`` (or that of the dataset a kedro-mlflow artifact dataset wraps), with
    ``${globals:...}`` resolved from that environment's globals, as an absolute path. The
    catalog owns the path; commands that need it (fer-predict's default model) ask here."""
    from fer_pipeline.params import load_environment_globals, read_yaml_file, resolve_globals

    entry = None
    for folder in dict.fromkeys(("base", env)):
        catalog = root / "conf" / folder / "catalog.yml"
        entry = ((read_yaml_file(catalog) if catalog.is_file() else None) or {}).get(name, entry)
    filepath = (entry or {}).get("filepath") or ((entry or {}).get("dataset") or {}).get("filepath")
    if not filepath:
        raise KeyError(f"the catalog (conf/base/catalog.yml) has no file entry {name!r}")
    resolved = resolve_globals(filepath, load_environment_globals(root / "conf", env), where=f"catalog {name}")
    return root / resolved
