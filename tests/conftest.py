import os

import pytest

import recbole_llm  # noqa: F401  (applies the compat shims)
from recbole.data import create_dataset
from recbole.utils import init_seed

from recbole_llm import Config
from recbole_llm.build import ensure_profiles
from recbole_llm.data.preparation import data_preparation

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config_dict(tmp_path, **overrides):
    config = {
        "data_path": FIXTURES,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "eval_args": {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [5],
        "valid_metric": "Recall@5",
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 256,
        "embedding_size": 8,
        "show_progress": False,
        "state": "WARNING",
        "profile_dir": str(tmp_path / "profiles"),
        "checkpoint_dir": str(tmp_path / "saved"),
        "seed": 2020,
    }
    config.update(overrides)
    return config


def tiny_data(tmp_path, model="LightGCN_RLM", **overrides):
    r"""Config and splits of the tiny dataset, built exactly as a run builds them, with the profile
    store ready for the model (as a run's entry point makes it)."""
    config = Config(model=model, dataset="tiny", config_dict=tiny_config_dict(tmp_path, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    ensure_profiles(config, train_data._dataset)
    return config, dataset, train_data, valid_data, test_data


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    # RecBole writes log/ and saved/ under the working directory.
    monkeypatch.chdir(tmp_path)
