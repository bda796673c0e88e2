import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import recbole.trainer.trainer as recbole_trainer
from recbole_llm import compat


def test_dok_update_restored_and_builds_the_same_matrix():
    compat.apply()
    a = sp.dok_matrix((3, 4), dtype=np.float32)
    a._update({(0, 1): 1.0, (2, 3): 2.0})
    assert a.toarray().tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]]


def test_apply_is_idempotent():
    compat.apply()
    shim = recbole_trainer.torch
    compat.apply()
    assert recbole_trainer.torch is shim


class Pickled:  # a class a weights-only load refuses, like RecBole's Config
    def __init__(self):
        self.value = 3


def test_trainer_module_reads_recbole_checkpoints(tmp_path):
    compat.apply()
    path = tmp_path / "ckpt.pth"
    torch.save({"config": Pickled(), "state_dict": {"w": torch.ones(2)}}, path)
    checkpoint = recbole_trainer.torch.load(path, map_location="cpu")
    assert checkpoint["config"].value == 3
    assert compat.load_checkpoint(path)["config"].value == 3
    # The rest of the trainer's torch is the real module.
    assert recbole_trainer.torch.ones is torch.ones


def test_global_torch_load_still_refuses_arbitrary_pickles(tmp_path):
    compat.apply()
    path = tmp_path / "other.pth"
    torch.save({"config": Pickled()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_numpy_aliases_recbole_uses_exist_without_a_config():
    compat.apply()
    assert np.float is np.float_ and np.int is np.int_ and np.bool is np.bool_


def _fresh_interpreter(code):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_recboles_sequential_models_switch_anomaly_detection_on_at_import():
    # Why the shim exists (RecBole 1.2.1's sine.py); if a RecBole release drops it, so can the shim.
    assert _fresh_interpreter(
        "import torch; import recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())"
    ) == ["True"]


def test_the_plugins_models_train_without_anomaly_detection_and_a_users_choice_is_kept():
    models = "from recbole_llm import get_model; [get_model(m) for m in ('LightGCN_RLM', 'SASRec_RLM', 'BERT4Rec', 'SINE')]"
    assert _fresh_interpreter(f"import torch; import recbole_llm; {models}; print(torch.is_anomaly_enabled())") == ["False"]
    assert _fresh_interpreter(
        f"import torch; torch.autograd.set_detect_anomaly(True, check_nan=False); import recbole_llm; {models}; "
        "print(torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())"
    ) == ["True", "False"]
