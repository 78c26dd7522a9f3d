"""Running the scripts as on the GPU machine: the package from src/ (not installed), and the
packages that machine's bare venv lacks (kedro, mlflow, pandas, OpenCV, matplotlib, tqdm, ...)
made unimportable, so a test proves the scripts need only torch, torchvision, numpy, Pillow,
PyYAML and scikit-learn."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU_PIPELINE = REPO / "scripts" / "gpu_pipeline.py"
ABLATION = REPO / "benchmarks" / "ablation.py"

#: Importable here, not in the GPU machine's bare venv: left out of the subprocesses' path.
GPU_MACHINE_MISSING = ("kedro", "kedro_datasets", "kedro_mlflow", "kedro_viz", "kedro_telemetry", "mlflow",
                       "pandas", "cv2", "matplotlib", "mpl_toolkits", "omegaconf", "tqdm")
#: Their distributions' names (metadata folders, bundled libraries), left out too.
_MISSING_DISTRIBUTIONS = ("kedro", "mlflow", "pandas", "opencv", "matplotlib", "omegaconf", "tqdm")


@functools.cache
def bare_site_packages() -> Path:
    """A folder of links to this venv's site-packages entries, less ``GPU_MACHINE_MISSING``:
    with ``python -S`` (no site-packages of its own) and this folder on PYTHONPATH, a subprocess
    sees the packages of a venv that never had those installed (nothing of them in sys.modules)."""
    import site
    import tempfile

    site_packages = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    folder = Path(tempfile.mkdtemp(prefix="bare_site_packages_"))
    for entry in site_packages.iterdir():
        name = entry.name.lower()
        if name.startswith(GPU_MACHINE_MISSING + _MISSING_DISTRIBUTIONS):
            continue
        if name.endswith(".pth") or name.startswith(("__editable__", "_fer_pipeline")):
            continue  # the package comes from src/, as on the GPU machine
        (folder / entry.name).symlink_to(entry)
    return folder


#: CPU-sized settings: ResNet (imagenet stem) on a few 16-image steps, a tiny autoencoder.
TINY = [
    "--epochs", "1", "--ae-epochs", "1",
    "--set", "training.model.stem=imagenet",
    "--set", "training.config.batch_size=16",
    "--set", "training.config.steps_per_epoch=3",
    "--set", "training.config.eval_batch_size=64",
    "--set", "autoencoder.latent_dim=16",
    "--set", "autoencoder.base_channels=8",
    "--set", "autoencoder.batch_size=64",
]
#: The ablation's logic does not depend on the depth: ResNet-18 halves its CPU time.
TINY_ABLATION = [*TINY, "--set", "training.model.arch=resnet18"]


def run_like_gpu_machine(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` with ``PYTHONPATH=src`` and only the bare venv's packages, one torch
    thread (tiny convolutions run far faster so on a small, busy CPU); fail with its output."""
    path = os.pathsep.join([str(REPO / "src"), str(bare_site_packages())])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    env.pop("OUT", None)
    result = subprocess.run([sys.executable, "-S", str(script), *args, "--threads", "1"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"{script.name} {' '.join(args)} failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result
