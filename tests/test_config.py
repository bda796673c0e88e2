import pytest

from recbole_llm import Config, get_model, rlm
from recbole.model.general_recommender import LightGCN


def test_plugin_model_inherits_base_yaml_and_plugin_defaults():
    config = Config(model="LightGCN_RLM", dataset="ml-100k", config_dict={"show_progress": False})
    assert (config["embedding_size"], config["n_layers"], config["reg_weight"]) == (64, 2, 1e-05)
    assert config["align"] == "con" and config["mask_ratio"] == 0.15 and config["llm_backend"] == "template"
    assert config["model"] == "LightGCN_RLM"
    # ml-100k's dataset YAML still applies on top of the model YAMLs.
    assert config["load_col"] == {"inter": ["user_id", "item_id", "rating", "timestamp"]}


def test_external_config_overrides_internal():
    config = Config(model="LightGCN_RLM", dataset="ml-100k", config_dict={"n_layers": 3, "align": "gen"})
    assert config["n_layers"] == 3 and config["align"] == "gen"


def test_recbole_models_still_work():
    config = Config(model="LightGCN", dataset="ml-100k")
    assert config["n_layers"] == 2 and config["model"] == "LightGCN"
    assert config["layer_combination"] == "mean"  # the plugin's LightGCN is RecBole's unless told otherwise
    assert Config(model="BPR", dataset="ml-100k")["model"] == "BPR"


def test_get_model_finds_rlm_classes_once():
    cls = get_model("LightGCN_RLM")
    assert cls is get_model("LightGCN_RLM") is rlm(get_model("LightGCN"))
    assert issubclass(cls, LightGCN) and cls.__name__ == "LightGCN_RLM"
    import recbole_llm.model.rlm as module

    assert module.LightGCN_RLM is cls  # importable by module path (pickling)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="NoSuchModel"):
        get_model("NoSuchModel_RLM")


def test_aligned_models_default_to_a_longer_patience():
    # Con's slow start outlasts RecBole's stopping_step of 10 (results/ml-100k.md); the base keeps RecBole's.
    assert Config(model="LightGCN_RLM", dataset="ml-100k")["stopping_step"] == 30
    assert Config(model="SGL_RLM", dataset="ml-100k")["stopping_step"] == 30
    assert Config(model="LightGCN", dataset="ml-100k")["stopping_step"] == 10
    assert Config(model="LightGCN_RLM", dataset="ml-100k", config_dict={"stopping_step": 7})["stopping_step"] == 7
    assert Config(model="LightGCN_RLM", dataset="rlmrec-amazon-book")["stopping_step"] == 5  # the paper's protocol
