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


@pytest.mark.parametrize("key, value, allowed", [
    ("align", "conn", "one of con, gen, none"),
    ("align_weight", -1, "a finite number >= 0"),
    ("align_weight", "abc", "a finite number >= 0"),
    ("align_weight", float("nan"), "a finite number >= 0"),
    ("align_temperature", 0, "> 0"),
    ("mask_ratio", 1.5, "> 0 and < 1"),
    ("mask_ratio", 0, "> 0 and < 1"),
    ("mask_sample_size", 1, "an integer >= 2"),
    ("align_sample_size", 2.5, "an integer >= 2"),
    ("align_user_negatives", "sampled", "one of all, batch"),
    ("profile_reduce_dim", 0, "an integer >= 1"),
    ("align_bias_init", "xavier", "one of zeros, pytorch"),
    ("profile_missing", "skip", "one of error, zero, mean"),
    ("llm_backend", "gpt", "one of template, openai, openai-batch, hf"),
    ("llm_response_format", "xml", "one of json_schema, json_object, none"),
    ("llm_unparsed", "guess", "one of fail, keep_raw"),
    ("llm_concurrency", 0, "an integer >= 1"),
    ("llm_timeout", 0, "> 0"),
    ("llm_max_retries", -1, "an integer >= 0"),
    ("llm_prompt_preset", "poems", "one of movies"),
    ("profile_max_items", "many", "an integer >= 1"),
    ("embed_batch_size", 0, "an integer >= 1"),
    ("dist_backend", "mpi", "one of nccl, gloo"),
    ("llm_prompt_item_file", "no/such/file.txt", "the path of an existing file"),
])
def test_every_plugin_key_is_checked_when_the_config_is_built(key, value, allowed):
    # The Config is built before any data is loaded or any request is sent: the error comes first,
    # names the key, the value and what is allowed.
    with pytest.raises(ValueError) as error:
        Config(model="LightGCN_RLM", dataset="ml-100k", config_dict={key: value}, command_line=False)
    assert f"{key}={value!r}" in str(error.value) and allowed in str(error.value)


def test_checked_values_are_converted():
    config = Config(model="LightGCN_RLM", dataset="ml-100k", config_dict={"align_weight": "0.05", "mask_sample_size": "128"},
                    command_line=False)
    assert config["align_weight"] == 0.05 and config["mask_sample_size"] == 128


def test_every_key_of_overall_yaml_is_checked():
    import yaml

    from recbole_llm.data.settings import DATA_KEYS
    from recbole_llm.evaluation.settings import EVALUATION_KEYS
    from recbole_llm.model.settings import MODEL_KEYS
    from recbole_llm.profiles.settings import ProfileSettings
    from recbole_llm.properties import PROPERTIES_DIR

    with open(f"{PROPERTIES_DIR}/overall.yaml") as f:
        keys = set(yaml.safe_load(f))
    checked = set(MODEL_KEYS) | set(EVALUATION_KEYS) | set(DATA_KEYS) | set(ProfileSettings.keys()) | {"dist_backend"}
    assert keys <= checked


def test_profile_settings_defaults_are_overall_yaml():
    # The profiles layer's typed defaults (for use without RecBole) equal the plugin's YAML defaults.
    import yaml

    from recbole_llm.profiles.settings import ProfileSettings
    from recbole_llm.properties import PROPERTIES_DIR

    with open(f"{PROPERTIES_DIR}/overall.yaml") as f:
        yaml_defaults = yaml.safe_load(f)
    defaults = ProfileSettings(dataset="d", data_path="p")
    for key in ProfileSettings.keys():
        if key in yaml_defaults:
            assert getattr(defaults, key) == yaml_defaults[key], key


def test_a_bad_yaml_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("align: con\n  mask_ratio: [0.1\n")
    with pytest.raises(ValueError, match=str(bad)):
        Config(model="LightGCN_RLM", dataset="ml-100k", config_file_list=[str(bad)], command_line=False)
    with pytest.raises(ValueError, match="does not exist"):
        Config(model="LightGCN_RLM", dataset="ml-100k", config_file_list=[str(tmp_path / "none.yaml")], command_line=False)


def test_a_key_given_twice_is_a_clear_error():
    with pytest.raises(ValueError, match="--align is given twice"):
        Config(model="LightGCN_RLM", dataset="ml-100k", command_line=["--align=con", "--align=gen"])
