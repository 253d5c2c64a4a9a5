"""A non-editable install carries what the demo and the benchmark read: the configs and the
PyTorch reference are package data, found without the checkout."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources, unpacked as ``pip install`` would lay it."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "sdm_jax", source / "sdm_jax",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(wheels), str(source)],
                   check=True, cwd=source)
    (wheel,) = wheels.glob("sdm_jax-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def _run(site: Path, code: str, cwd: Path) -> str:
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_the_installed_demo_and_benchmark_find_their_files(installed, tmp_path):
    code = ("import importlib.util, sdm_jax, sdm_jax.demo as d, sdm_jax.bench.__main__ as b; "
            "print(sdm_jax.__file__, d.CONFIG, d.load_config(d.CONFIG).model.name, "
            "importlib.util.find_spec(b.TORCH_MODULE) is not None, "
            "d.load_config(d.BASELINE_CONFIGS['ac']).mlac.inner_steps)")
    package, config, model, torch_script, ac_steps = _run(installed, code, tmp_path).split()
    assert Path(package).is_relative_to(installed) and Path(config).is_relative_to(installed)
    assert model and torch_script == "True" and ac_steps == "0"
    names = sorted(p.name for p in (installed / "sdm_jax" / "configs").glob("*.yaml"))
    assert names == sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def test_an_unknown_packaged_config_is_named_in_one_line():
    from sdm_jax.configs import packaged_config

    with pytest.raises(FileNotFoundError, match="no packaged config 'nope.yaml'; available: "):
        packaged_config("nope.yaml")
