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
