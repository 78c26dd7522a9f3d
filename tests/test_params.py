"""fer_pipeline.params: the parameter files read without Kedro exactly as Kedro reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_pipeline.params import (
    apply_sets,
    load_environment_parameters,
    load_parameters,
    read_yaml_file,
    resolve_globals,
)
from fer_pipeline.runner import cli as runner

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "conf").glob("*/parameters*.yml")) + [REPO / "conf" / "ablation.yml"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_parameter_files_read_as_kedro_reads_them(path):
    """The GPU machine's reader gives exactly what Kedro's loader (OmegaConf) gives."""
    from omegaconf import OmegaConf

    assert (read_yaml_file(path) or {}) == (OmegaConf.to_container(OmegaConf.load(path)) or {})


def test_base_parameters_equal_what_kedro_loads():
    """The whole of conf/base, ${globals:...} resolved, is what `kedro run` gets."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(conf_source=str(REPO / "conf"), base_env="base", default_run_env="base")
    ours = load_parameters(REPO / "conf" / "base")
    assert ours == loader["parameters"]
    assert ours["training"]["config"]["checkpoint_dir"] == "data/06_models/checkpoints"


@pytest.mark.parametrize("env", ["demo", "cpu"])
def test_environment_parameters_equal_what_kedro_loads(env):
    """base + conf/<env>, merged key by key (settings.py's soft merge), globals of both."""
    from kedro.config import OmegaConfigLoader

    from fer_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(REPO / "conf"), base_env="base", default_run_env=env,
                               merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"])
    ours = load_environment_parameters(REPO / "conf", env)
    assert ours == loader["parameters"]
    assert ours["training"]["distributed"]["nproc_per_node"] == 1  # a base key the env does not set
    with pytest.raises(FileNotFoundError, match="no environment 'nope'"):
        load_environment_parameters(REPO / "conf", "nope")


def test_resolve_globals_substitutes_keeps_types_and_rejects_unknown_keys():
    globals_ = {"data_root": "data/demo", "sizes": {"batch": 64}}
    params = {"a": "${globals:data_root}/06_models", "b": ["${globals:sizes.batch}"], "c": 3}
    assert resolve_globals(params, globals_) == {"a": "data/demo/06_models", "b": [64], "c": 3}
    with pytest.raises(KeyError, match="globals:data_rot"):
        resolve_globals({"a": "${globals:data_rot}/x"}, globals_)


def test_dump_params_applies_overrides(tmp_path):
    target = tmp_path / "params.json"
    runner.main(["--dump-params", str(target), "--epochs", "3", "--duplicates", "drop_leaked",
             "--set", "augmentation.policy.random_resized_crop={scale: [0.8, 1.0]}"])
    params = json.loads(target.read_text())
    defaults = load_parameters(REPO / "conf" / "base")
    assert params["training"]["config"]["epochs"] == 3
    assert params["ingestion"]["duplicates"] == "drop_leaked"
    assert params["augmentation"]["policy"]["random_resized_crop"] == {"scale": [0.8, 1.0]}
    assert params["autoencoder"] == defaults["autoencoder"]
    with pytest.raises(KeyError):
        apply_sets(defaults, ["trainig.config.epochs=3"])  # a typo in a group name is an error
