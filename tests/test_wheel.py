"""The package as users install it: a built wheel, installed non-editable into a fresh virtualenv,
trains LightGCN_RLM (con and gen) from a directory outside the checkout."""

import glob
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the build backend (setuptools) is the test environment's, no download.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), REPO],
                   check=True, capture_output=True, timeout=600)
    (path,) = glob.glob(str(out / "recbole_llm-*.whl"))
    return path


def test_the_wheel_ships_the_properties_and_prompts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("overall.yaml", "model/AlignedRecommender.yaml", "model/LightGCN.yaml", "dataset/rlmrec-amazon-book.yaml",
                 "prompts/movies/item.txt", "prompts/generic/user.txt"):
        assert f"recbole_llm/properties/{name}" in names, name


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    r"""A fresh virtualenv with the wheel installed (no editable checkout in it); its dependencies
    come from this test environment's site-packages through a .pth file, so nothing is downloaded."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A path listed in a .pth file is not a site directory: the checkout's editable finder there is not run.
    with open(os.path.join(site, "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
                   check=True, capture_output=True, timeout=600)
    return python, site


def test_an_installed_wheel_trains_con_and_gen_from_another_directory(installed, tmp_path):
    python, site = installed
    # The tiny fixture dataset keeps this quick; the YAML defaults and prompts come from the wheel.
    code = (
        "import recbole_llm\n"
        f"assert recbole_llm.__file__.startswith({site!r}), recbole_llm.__file__\n"
        "from recbole_llm import run_recbole_llm\n"
        "for align in ('con', 'gen'):\n"
        f"    result = run_recbole_llm(model='LightGCN_RLM', dataset='tiny', config_dict={{'align': align, 'epochs': 1, "
        f"'data_path': {FIXTURES!r}, 'show_progress': False, 'topk': [5], 'valid_metric': 'Recall@5'}})\n"
        "    print(align, 'recall@5', result['test_result']['recall@5'])\n"
    )
    out = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    lines = [line.split() for line in out.stdout.splitlines() if "recall@5" in line]
    assert [line[0] for line in lines] == ["con", "gen"] and all(0.0 <= float(line[-1]) <= 1.0 for line in lines)
    assert os.path.isfile(tmp_path / "profiles" / "tiny" / "manifest.json")
