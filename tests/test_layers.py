"""The layers point one way: models read the profile store and never build, write or call an LLM;
building happens in the entry points, once; nothing of ours is written into RecBole's modules."""

import hashlib
import os
import subprocess
import sys

import pytest
import recbole.trainer
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from conftest import REPO, tiny_config_dict
from recbole_llm import Config, get_model, run_recbole_llm
from recbole_llm.build import ensure_profiles
from recbole_llm.profiles.store import ProfileStoreError
from recbole_llm.trainer import get_trainer

IMPORT_LAYERS = os.path.join(os.path.dirname(REPO), "shared", "tools", "import_layers.py")
PROFILE_BACKENDS = ("recbole_llm.profiles.builder", "recbole_llm.profiles.backends", "recbole_llm.profiles.llm",
                    "recbole_llm.profiles.embedders", "recbole_llm.profiles.openai_api", "openai",
                    "sentence_transformers", "transformers")


def test_the_model_layer_imports_no_profile_backend():
    code = (
        "import sys\n"
        "import recbole_llm.model.rlm, recbole_llm.model.adapters, recbole_llm.data.loader, recbole_llm.utils\n"
        "from recbole_llm import rlm, get_model\n"
        "get_model('LightGCN_RLM'); get_model('NCL_RLM')\n"
        f"print([m for m in {PROFILE_BACKENDS!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.skipif(not os.path.isfile(IMPORT_LAYERS), reason="../shared/tools/import_layers.py is not beside the checkout")
def test_the_package_has_no_import_circle():
    out = subprocess.run([sys.executable, IMPORT_LAYERS, os.path.join(REPO, "recbole_llm")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "no import circles" in out.stdout, out.stdout + out.stderr


def _split(tmp_path, model="LightGCN_RLM", **overrides):
    config = Config(model=model, dataset="tiny", config_dict=tiny_config_dict(tmp_path, **overrides), command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return config, train_data._dataset


def _snapshot(folder):
    return {
        name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
        for name in sorted(os.listdir(folder))
    }


def test_building_a_model_reads_the_store_and_writes_nothing(tmp_path):
    config, train = _split(tmp_path)
    ensure_profiles(config, train)
    store = config["profile_dir"]
    before, mtimes = _snapshot(store), {n: os.stat(os.path.join(store, n)).st_mtime_ns for n in os.listdir(store)}
    for align in ("con", "gen"):
        config["align"] = align
        get_model("LightGCN_RLM")(config, train)
    assert _snapshot(store) == before
    assert {n: os.stat(os.path.join(store, n)).st_mtime_ns for n in os.listdir(store)} == mtimes


def test_a_model_refuses_a_missing_store_with_the_command_that_builds_it(tmp_path):
    config, train = _split(tmp_path)
    with pytest.raises(ProfileStoreError, match="python -m recbole_llm.profiles build --dataset=tiny"):
        get_model("LightGCN_RLM")(config, train)
    assert not os.path.exists(config["profile_dir"])  # refused, nothing built


def test_a_model_refuses_a_store_of_another_split(tmp_path):
    config, train = _split(tmp_path)
    ensure_profiles(config, train)
    other, other_train = _split(tmp_path, eval_args={"split": {"RS": [0.5, 0.25, 0.25]}, "order": "RO", "group_by": "user", "mode": "full"})
    with pytest.raises(ProfileStoreError, match="another training split"):
        get_model("LightGCN_RLM")(other, other_train)


def test_a_run_builds_a_missing_store_once_and_then_only_reads_it(tmp_path):
    config_dict = tiny_config_dict(tmp_path)
    run_recbole_llm("LightGCN_RLM", "tiny", config_dict=config_dict)
    store = config_dict["profile_dir"]
    built = {n: os.stat(os.path.join(store, n)).st_mtime_ns for n in os.listdir(store)}
    assert {"manifest.json", "item.npy", "user.npy"} <= set(built)
    run_recbole_llm("LightGCN_RLM", "tiny", config_dict={**config_dict, "align": "gen"})
    assert {n: os.stat(os.path.join(store, n)).st_mtime_ns for n in os.listdir(store)} == built


def test_a_model_without_alignment_needs_no_store(tmp_path):
    config_dict = tiny_config_dict(tmp_path, align="none")
    run_recbole_llm("LightGCN_RLM", "tiny", config_dict=config_dict)
    assert not os.path.exists(config_dict["profile_dir"])


def test_rlm_trainers_are_found_without_writing_into_recbole():
    from recbole.trainer import NCLTrainer

    for name in ("NCL_RLM", "LightGCN_RLM", "SGL_RLM"):
        get_model(name)
    assert not [name for name in vars(recbole.trainer) if name.endswith("_RLMTrainer")]
    assert issubclass(get_trainer("general", "NCL_RLM"), NCLTrainer)
    assert get_trainer("general", "LightGCN_RLM") is get_trainer("general", "LightGCN")


def test_a_profile_build_adds_a_few_lines_to_a_log_file(tmp_path):
    # stdout and stderr are a file here, as in a logged job: no bar refresh per profile.
    log = tmp_path / "build.log"
    with open(log, "w") as out:
        subprocess.run(
            [sys.executable, "-m", "recbole_llm.profiles", "build", "--dataset=tiny", f"--data_path={REPO}/tests/fixtures",
             f"--profile_dir={tmp_path / 'store'}", "--show_progress=True", "--state=INFO"],
            stdout=out, stderr=subprocess.STDOUT, timeout=600, check=True, cwd=tmp_path,
        )
    refreshes = [segment for segment in log.read_text().replace("\r", "\n").splitlines() if "profiles" in segment and "|" in segment]
    assert 1 <= len(refreshes) <= 4, refreshes  # one final state per kind (a bar refreshes at most every 30 s)
    assert len(log.read_text().splitlines()) <= 60  # RecBole's own config and dataset lines included


def test_the_run_script_reports_a_bad_setting_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(REPO, "run_recbole_llm.py"), "--model=LightGCN_RLM", "--mask_ratio=1.5"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "error: mask_ratio=1.5: must be a finite number > 0 and < 1" in out.stderr
    assert not os.path.exists(tmp_path / "profiles")  # refused before any data was loaded or profile written
