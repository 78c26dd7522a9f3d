"""The project's parameters without Kedro: conf/<env>/parameters*.yml read as Kedro reads them.

The runner and the ablation run where Kedro is not installed; they read the same files with
PyYAML (a test checks that OmegaConf, Kedro's loader, reads every parameter file to the same
values), merge them by top-level key as Kedro does, resolve ``${globals:KEY}`` from the one
folder's ``globals.yml`` (no default values, no other resolvers: those are an error), and take
``KEY=VALUE`` overrides.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def read_yaml_file(path: str | os.PathLike) -> Any:
    """One YAML file's content (PyYAML, safe loader)."""
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def parse_value(text: str) -> Any:
    """A ``--set KEY=VALUE`` value in YAML syntax: 0.05, true, null, [0.9, 1.1], {p: 0.5}."""
    import yaml

    return yaml.safe_load(text)


_GLOBAL_REFERENCE = re.compile(r"\$\{globals:([A-Za-z0-9_.]+)\}")


def resolve_globals(value: Any, globals_: Mapping[str, Any], where: str = "parameters") -> Any:
    """``value`` with every ``${globals:KEY}`` replaced by ``globals_[KEY]`` (dotted keys reach
    into nested groups); an unknown key is an error, as in Kedro."""
    if isinstance(value, Mapping):
        return {key: resolve_globals(item, globals_, where) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_globals(item, globals_, where) for item in value]
    if not isinstance(value, str):
        return value

    def lookup(key: str) -> Any:
        node: Any = globals_
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(f"{where}: ${{globals:{key}}} is not defined in globals.yml")
            node = node[part]
        return node

    whole = _GLOBAL_REFERENCE.fullmatch(value)
    if whole:  # the value is the reference: keep the global's type
        return lookup(whole.group(1))
    resolved = _GLOBAL_REFERENCE.sub(lambda match: str(lookup(match.group(1))), value)
    if "${" in resolved:  # a default (${globals:k,d}) or another resolver: Kedro would resolve it, we cannot
        raise ValueError(f"{where}: {value!r}: only ${{globals:KEY}} interpolation is supported here")
    return resolved


def load_parameters(conf_dir: str | os.PathLike) -> dict[str, Any]:
    """Every ``parameters*.yml`` of ``conf_dir`` merged by top-level key, as Kedro does (a key
    defined in two files is an error there too), with ``${globals:KEY}`` resolved from
    ``conf_dir/globals.yml``."""
    params = _read_parameter_files(conf_dir)
    if not params:
        raise FileNotFoundError(f"no parameters*.yml in {conf_dir}")
    return resolve_globals(params, _read_globals(conf_dir), where=str(conf_dir))


def load_environment_parameters(conf_root: str | os.PathLike, env: str | None) -> dict[str, Any]:
    """``conf_root/base`` with ``conf_root/<env>`` merged over it key by key, globals too: what
    ``kedro run --env <env>`` gets with this project's soft merge (settings.py). None: base."""
    base = Path(conf_root) / "base"
    params = _read_parameter_files(base)
    folder = _environment_folder(conf_root, env)
    if folder is not None:
        params = deep_merge(params, _read_parameter_files(folder))
    if not params:
        raise FileNotFoundError(f"no parameters*.yml in {base}")
    return resolve_globals(params, load_environment_globals(conf_root, env), where=str(conf_root))


def load_environment_globals(conf_root: str | os.PathLike, env: str | None) -> dict[str, Any]:
    """``globals.yml`` of conf/base with the environment's merged over it (``data_root``...)."""
    globals_ = _read_globals(Path(conf_root) / "base")
    folder = _environment_folder(conf_root, env)
    if folder is not None:
        globals_ = deep_merge(globals_, _read_globals(folder))
    return globals_


def _environment_folder(conf_root: str | os.PathLike, env: str | None) -> Path | None:
    """The environment's folder; None for base, and for a missing ``local`` (Kedro's default run
    environment, which Kedro also treats as empty when it is absent)."""
    if not env or env == "base":
        return None
    folder = Path(conf_root) / env
    if not folder.is_dir():
        if env == "local":
            return None
        raise FileNotFoundError(f"no environment {env!r}: {folder} is not a folder")
    return folder


def _read_globals(conf_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(conf_dir) / "globals.yml"
    return (read_yaml_file(path) or {}) if path.exists() else {}


def _read_parameter_files(conf_dir: str | os.PathLike) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for path in sorted(Path(conf_dir).glob("parameters*.yml")):
        content = read_yaml_file(path) or {}
        for key, value in content.items():
            if key in params:
                raise ValueError(f"parameter key {key!r} defined twice (again in {path.name})")
            params[key] = value
    return params


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in (dicts recursively, other values replaced)."""
    out = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(params: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(p, "training.config.epochs", 3)``; the parent keys must exist (typo guard)."""
    parts = key.split(".")
    node = params
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise KeyError(f"--set {key}: no parameter group {'.'.join(parts[:i + 1])!r}")
        node = node[part]
    node[parts[-1]] = value


def apply_sets(params: Mapping[str, Any], assignments: Sequence[str] | None) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` strings (VALUE in YAML flow syntax) to a copy of ``params``."""
    params = deep_merge(params, {})
    for assignment in assignments or []:
        if "=" not in assignment:
            raise ValueError(f"--set needs KEY=VALUE, got {assignment!r}")
        key, raw = assignment.split("=", 1)
        set_dotted(params, key.strip(), parse_value(raw))
    return params
