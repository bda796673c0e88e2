r"""Cold start: the split command (ColdRec's protocol), warm-only training negatives, and cold-start
scoring (knn, projector) of <Base>_RLM, on a cold split of the tiny dataset."""

import json
import os
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, tiny_config_dict
from recbole.data import create_dataset
from recbole.utils import init_seed

from recbole_llm import Config, get_model, get_trainer
from recbole_llm.build import ensure_profiles
from recbole_llm.checks import SettingError
from recbole_llm.data.cold_split import read_inter, write_split
from recbole_llm.data.preparation import data_preparation
from recbole_llm.model.cold_start import ridge_map
from recbole_llm.profiles.records import item_records, user_records
from recbole_llm.profiles.settings import ProfileSettings


def tiny_source(tmp_path, reviews=False):
    r"""A copy of the tiny dataset; with ``reviews``, each interaction gets a review naming its pair."""
    source = tmp_path / "source" / "tiny"
    source.mkdir(parents=True, exist_ok=True)
    for suffix in ("item", "user", "inter"):
        shutil.copy(os.path.join(FIXTURES, "tiny", f"tiny.{suffix}"), source / f"tiny.{suffix}")
    if reviews:
        lines = (source / "tiny.inter").read_text().splitlines()
        out = [lines[0] + "\treview:token_seq"]
        out += [f"{line}\treviewtext {line.split()[0]} {line.split()[1]}" for line in lines[1:]]
        (source / "tiny.inter").write_text("\n".join(out) + "\n")
    return str(tmp_path / "source")


def cold_tiny(tmp_path, model="LightGCN_RLM", kind="item", seed=2020, reviews=False, **overrides):
    r"""Config and splits of a cold split of the tiny dataset, with the profile store ready."""
    config_path, _ = write_split("tiny", str(tmp_path / "splits"), kind, 0.2, seed, data_path=tiny_source(tmp_path, reviews))
    name = os.path.basename(os.path.dirname(config_path))
    config_dict = tiny_config_dict(tmp_path, **overrides)
    for key in ("data_path", "load_col", "eval_args"):  # the split's config file says these
        config_dict.pop(key)
    config = Config(model=model, dataset=name, config_file_list=[config_path], config_dict=config_dict, command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    ensure_profiles(config, train_data._dataset)
    held_out = (tmp_path / "splits" / name / f"{name}.cold_{kind}s.txt").read_text().split()
    return config, train_data, valid_data, test_data, held_out


def internal_ids(dataset, field, tokens):
    return torch.tensor([dataset.token2id(field, t) for t in tokens])


# --- the split ---------------------------------------------------------------------------------


def test_split_holds_out_a_share_of_items_with_all_their_interactions(tmp_path):
    config_path, counts = write_split("tiny", str(tmp_path / "out"), "item", 0.2, 7, data_path=tiny_source(tmp_path))
    folder = os.path.dirname(config_path)
    name = os.path.basename(folder)
    parts = {p: read_inter(os.path.join(folder, f"{name}.{p}.inter")) for p in ("train", "valid", "test")}
    held_out = set(open(os.path.join(folder, f"{name}.cold_items.txt")).read().split())
    assert len(held_out) == 8  # 20% of the 40 items
    train_items = set(parts["train"]["item_id:token"])
    assert not held_out & train_items
    everything = read_inter(os.path.join(FIXTURES, "tiny", "tiny.inter"))
    assert sum(len(p) for p in parts.values()) == len(everything)
    held_rows = everything[everything["item_id:token"].isin(held_out)]
    in_eval = set(map(tuple, parts["valid"].values.tolist())) | set(map(tuple, parts["test"].values.tolist()))
    assert set(map(tuple, held_rows.values.tolist())) <= in_eval
    assert held_out & set(parts["valid"]["item_id:token"]) and held_out & set(parts["test"]["item_id:token"])
    assert counts["cold_items"] == 8


def test_split_is_reproducible_by_seed(tmp_path):
    source = tiny_source(tmp_path)
    texts = []
    for out, seed in (("a", 3), ("b", 3), ("c", 4)):
        config_path, _ = write_split("tiny", str(tmp_path / out), "user", 0.2, seed, data_path=source, name="t")
        texts.append(open(config_path.replace(".yaml", ".test.inter")).read())
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]


def test_user_split_holds_out_users(tmp_path):
    config, train_data, _, test_data, held_out = cold_tiny(tmp_path, kind="user", align="none", cold_start="knn")
    train = train_data._dataset
    users = internal_ids(train, train.uid_field, held_out)
    counts = torch.bincount(train.inter_feat[train.uid_field], minlength=train.user_num)
    assert len(held_out) == 6 and (counts[users] == 0).all()
    assert set(users.tolist()) & set(test_data._dataset.inter_feat[train.uid_field].tolist())


# --- cold items are invisible to training -------------------------------------------------------


def test_cold_items_are_not_drawn_as_negatives(tmp_path):
    _, train_data, _, _, held_out = cold_tiny(tmp_path, align="none")
    cold = internal_ids(train_data._dataset, train_data._dataset.iid_field, held_out)
    negatives = torch.cat([batch["neg_item_id"] for _ in range(5) for batch in train_data])
    assert len(negatives) > 1000 and not torch.isin(negatives, cold).any()


def test_recboles_default_sampler_would_draw_them(tmp_path):
    # The check above can fail: with RecBole's default (neg_sample_cold_items: true) they are drawn.
    _, train_data, _, _, held_out = cold_tiny(tmp_path, align="none", neg_sample_cold_items=True)
    cold = internal_ids(train_data._dataset, train_data._dataset.iid_field, held_out)
    negatives = torch.cat([batch["neg_item_id"] for _ in range(5) for batch in train_data])
    assert torch.isin(negatives, cold).any()


@pytest.mark.parametrize("align", ["none", "con", "gen"])
def test_cold_items_are_not_trained(tmp_path, align):
    config, train_data, valid_data, _, held_out = cold_tiny(tmp_path, align=align, epochs=2)
    cold = internal_ids(train_data._dataset, train_data._dataset.iid_field, held_out)
    model = get_model("LightGCN_RLM")(config, train_data._dataset)
    before = model.item_embedding.weight.detach().clone()
    get_trainer(config["MODEL_TYPE"], config["model"])(config, model).fit(train_data, valid_data, saved=False)
    after = model.item_embedding.weight.detach()
    warm = torch.ones(len(after), dtype=torch.bool)
    warm[cold] = False
    warm[0] = False
    assert torch.equal(after[cold], before[cold])
    assert not torch.allclose(after[warm], before[warm])


def test_cold_items_appear_in_no_profile(tmp_path):
    config, train_data, _, _, held_out = cold_tiny(tmp_path, align="con", reviews=True, llm_prompt_preset="movies")
    store = config["profile_dir"]
    items = {json.loads(line)["id"]: json.loads(line)["profile"] for line in open(os.path.join(store, "item.jsonl"))}
    users = [json.loads(line)["profile"] for line in open(os.path.join(store, "user.jsonl"))]
    titles = {}
    for line in open(os.path.join(FIXTURES, "tiny", "tiny.item")).read().splitlines()[1:]:
        token, title = line.split("\t")[:2]
        titles[token] = title
    for token in held_out:
        assert token in items and titles[token] in items[token]  # a cold item's profile: its metadata
        mention = re.compile(re.escape(titles[token]) + r"(?!\d)|" + re.escape(token))  # Chronicle2 is not Chronicle20
        assert not any(mention.search(text) for text in users)  # in no user's profile text
    # What the profiles are written from (an LLM's prompt included): no review or interaction of a cold item.
    settings = ProfileSettings.from_mapping(config)
    item_facts = item_records(settings, train_data._dataset)
    assert any("reviews" in item_facts[t] for t in item_facts if t not in held_out)  # warm items' training reviews
    assert not any("reviews" in item_facts[t] for t in held_out)
    for record in user_records(settings, train_data._dataset, item_facts).values():
        assert not {i["id"] for i in record["items"]} & set(held_out)
        assert not any(token in i.get("review", "") for i in record["items"] for token in held_out)


# --- cold-start scoring -------------------------------------------------------------------------


def _cold_model(tmp_path, align, cold_start, **overrides):
    config, train_data, valid_data, test_data, held_out = cold_tiny(tmp_path, align=align, cold_start=cold_start, **overrides)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("LightGCN_RLM")(config, train_data._dataset)
    model.eval()
    cold = internal_ids(train_data._dataset, train_data._dataset.iid_field, held_out)
    return config, model, train_data, valid_data, test_data, cold


def test_knn_cold_item_is_the_weighted_mean_of_its_nearest_warm_items(tmp_path):
    _, model, train_data, _, _, cold = _cold_model(tmp_path, "none", "knn", cold_start_k=3)
    with torch.no_grad():
        users, items = model.forward()
        _, scored_items = model.cold_start_embeddings()
    profile = F.normalize(model.item_profile, dim=1)
    warm = torch.bincount(train_data._dataset.inter_feat["item_id"], minlength=len(items)) > 0
    for item in cold.tolist():
        similarity = (profile[warm] @ profile[item]).double()
        top, position = similarity.topk(3)
        weights = top.clamp(min=0) / top.clamp(min=0).sum()
        expected = (items[warm][position].double() * weights[:, None]).sum(dim=0)
        assert torch.allclose(scored_items[item].double(), expected, atol=1e-5)
    assert torch.equal(scored_items[warm], items[warm])  # warm items keep their embeddings


@pytest.mark.parametrize("align,cold_start", [("none", "knn"), ("con", "projector"), ("gen", "projector"), ("none", "projector")])
def test_predict_and_full_sort_predict_use_the_cold_embeddings(tmp_path, align, cold_start):
    config, model, train_data, _, _, cold = _cold_model(tmp_path, align, cold_start)
    user = torch.tensor([1, 2, 3])
    with torch.no_grad():
        users, items = model.cold_start_embeddings()
        full = model.full_sort_predict({"user_id": user}).view(3, -1)
        pairs = model.predict({"user_id": user, "item_id": cold[:3]})
    assert torch.allclose(full, users[user] @ items.T)
    assert torch.allclose(pairs, (users[user] * items[cold[:3]]).sum(dim=1))
    config["cold_start"] = "none"
    plain = get_model("LightGCN_RLM")(config, train_data._dataset)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    with torch.no_grad():
        base = plain.full_sort_predict({"user_id": user}).view(3, -1)
    warm = torch.ones(full.shape[1], dtype=torch.bool)
    warm[cold] = False
    assert torch.allclose(full[:, warm], base[:, warm], atol=1e-6)  # warm scores are the base's
    assert not torch.allclose(full[:, cold], base[:, cold])  # cold ones come from the profiles


def test_con_projector_is_cons_projector_and_warm_mean_rescales_it(tmp_path):
    config, model, train_data, _, _, cold = _cold_model(tmp_path, "con", "projector")
    with torch.no_grad():
        _, items = model.forward()
        _, scored = model.cold_start_embeddings()
        projected = model.alignment.projector(model.item_profile[cold])
    assert torch.allclose(scored[cold], projected, atol=1e-6)
    config["cold_start_norm"] = "warm_mean"
    rescaled = get_model("LightGCN_RLM")(config, train_data._dataset)
    rescaled.load_state_dict(model.state_dict())
    rescaled.eval()
    with torch.no_grad():
        _, scored = rescaled.cold_start_embeddings()
    warm = torch.bincount(train_data._dataset.inter_feat["item_id"], minlength=len(items)) > 0
    warm[0] = False
    assert torch.allclose(scored[cold], F.normalize(projected, dim=1) * items[warm].norm(dim=1).mean(), atol=1e-6)
    assert torch.equal(scored[warm], items[warm])


def test_ridge_map_recovers_a_linear_map():
    generator = torch.Generator().manual_seed(0)
    weights, bias = torch.randn(16, 4, generator=generator), torch.randn(4, generator=generator)
    warm_profile, cold_profile = torch.randn(200, 16, generator=generator), torch.randn(5, 16, generator=generator)
    warm_embedding = warm_profile @ weights + bias
    centred_cold, solve = ridge_map(cold_profile, warm_profile, 1e-8)
    mean = warm_embedding.mean(dim=0, keepdim=True)
    assert torch.allclose(centred_cold @ (solve @ (warm_embedding - mean)) + mean, cold_profile @ weights + bias, atol=1e-3)
    # A large penalty shrinks the map towards the mean embedding.
    centred_cold, solve = ridge_map(cold_profile, warm_profile, 1e6)
    assert torch.allclose(centred_cold @ (solve @ (warm_embedding - mean)) + mean, mean.expand(5, -1), atol=1e-3)


@pytest.mark.parametrize("align,cold_start", [("none", "knn"), ("con", "projector"), ("gen", "projector")])
def test_checkpoints_reload_with_the_same_cold_scores(tmp_path, align, cold_start):
    from recbole_llm.quick_start import load_data_and_model

    config, model, train_data, valid_data, _, cold = _cold_model(tmp_path, align, cold_start)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    trainer.model.load_state_dict(torch.load(trainer.saved_model_file, weights_only=False)["state_dict"])
    model.eval()
    user = torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        expected = model.full_sort_predict({"user_id": user})
    _, reloaded, *_ = load_data_and_model(trainer.saved_model_file)
    reloaded.eval()
    assert reloaded.cold_start == cold_start
    with torch.no_grad():
        assert torch.allclose(reloaded.full_sort_predict({"user_id": user}), expected, atol=1e-6)


def test_cold_start_reads_profiles_even_without_alignment(tmp_path):
    config, model, *_ = _cold_model(tmp_path, "none", "knn")
    assert model.reads_profiles(config) and model.alignment is None and len(model.cold_groups) == 1
    from recbole_llm.build import reads_profiles

    assert reads_profiles(config)


def test_a_plain_recbole_model_is_pointed_to_its_rlm_form(tmp_path):
    with pytest.raises(SettingError, match="LightGCN_RLM --align=none"):
        Config(model="LightGCN", dataset="tiny", config_dict={"cold_start": "knn"}, command_line=False)


@pytest.mark.parametrize("key,value", [("cold_start", "nearest"), ("cold_start_k", 0), ("cold_start_ridge", 0), ("cold_start_norm", "max")])
def test_cold_start_keys_are_checked(key, value):
    with pytest.raises(SettingError, match=key):
        Config(model="LightGCN_RLM", dataset="tiny", config_dict={key: value}, command_line=False)


def test_cold_users_get_knn_embeddings(tmp_path):
    config, train_data, _, _, held_out = cold_tiny(tmp_path, kind="user", align="none", cold_start="knn", cold_start_k=2)
    model = get_model("LightGCN_RLM")(config, train_data._dataset)
    model.eval()
    users = internal_ids(train_data._dataset, train_data._dataset.uid_field, held_out)
    with torch.no_grad():
        plain_users, _ = model.forward()
        scored_users, _ = model.cold_start_embeddings()
    assert not torch.allclose(scored_users[users], plain_users[users])
    assert sorted(model.cold_nodes_0.tolist()) == sorted(users.tolist())


@pytest.mark.slow
def test_a_run_on_the_split_reports_cold_metrics_and_selects_on_them(tmp_path):
    from recbole_llm.quick_start import run_recbole_llm

    config_path, _ = write_split("tiny", str(tmp_path / "splits"), "item", 0.2, 2020, data_path=tiny_source(tmp_path))
    name = os.path.basename(os.path.dirname(config_path))
    config_dict = tiny_config_dict(tmp_path, align="none", cold_start="knn", cold_start_norm="warm_mean", epochs=2,
                                   metrics=["Recall", "ColdRecall", "WarmRecall"], valid_metric="coldrecall@5")
    for key in ("data_path", "load_col", "eval_args"):
        config_dict.pop(key)
    result = run_recbole_llm("LightGCN_RLM", name, [config_path], config_dict)
    assert result["best_valid_score"] == result["best_valid_result"]["coldrecall@5"]
    assert result["test_result"]["coldrecall@5"] > 0  # knn + warm_mean puts cold items in the top 5
