import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, tiny_config_dict, tiny_data
from recbole_llm import profiles_cli as cli
from recbole_llm.profiles.backends import render_item, render_user
from recbole_llm.build import build_profiles, profile_settings
from recbole_llm.profiles.builder import ProfileBuilder
from recbole_llm.profiles.records import item_records, split_fingerprint, user_records
from recbole_llm.profiles.store import ProfileStore


def read_tiny(name):
    with open(os.path.join(FIXTURES, "tiny", f"tiny.{name}")) as f:
        header = f.readline()
        return header, [line.rstrip("\n").split("\t") for line in f]


def titles():
    _, rows = read_tiny("item")
    return {row[0]: (row[1], row[2], row[3].split()) for row in rows}


def split_pairs(dataset):
    uid, iid = dataset.uid_field, dataset.iid_field
    users = dataset.field2id_token[uid][dataset.inter_feat[uid].numpy()]
    items = dataset.field2id_token[iid][dataset.inter_feat[iid].numpy()]
    return list(zip(users.tolist(), items.tolist()))


@pytest.fixture
def tiny(tmp_path):
    return tiny_data(tmp_path, model="LightGCN")


def test_item_profile_reads_like_a_person_wrote_it(tiny):
    config, _, train_data, _, _ = tiny
    items = item_records(profile_settings(config), train_data._dataset)
    token, (title, year, genres) = next(iter(titles().items()))
    assert render_item(items[token]) == f"{title} ({year}). Categories: {', '.join(genres)}."


def test_user_profile_has_features_and_best_rated_recent_training_items(tiny):
    config, _, train_data, _, _ = tiny
    train = train_data._dataset
    users = user_records(profile_settings(config), train, item_records(profile_settings(config), train))
    _, user_rows = read_tiny("user")
    token, age, gender, occupation = user_rows[0]
    text = render_user(users[token])
    assert text.startswith(f"A {age}-year-old {'male' if gender == 'M' else 'female'} {occupation}. Enjoys: ")
    # Order: best-rated first, then most recent, from the raw training interactions of this user.
    _, inter = read_tiny("inter")
    train_items = {i for u, i in split_pairs(train) if u == token}
    raw = sorted(((float(r), float(t), i) for u, i, r, t in inter if u == token and i in train_items), reverse=True)
    expected = [i for _, _, i in raw][: config["profile_max_items"]]
    assert [i["id"] for i in users[token]["items"]] == expected
    assert "Favourite categories: " in text


def test_user_profile_lists_at_most_profile_max_items(tmp_path):
    config, _, train_data, _, _ = tiny_data(tmp_path, model="LightGCN", profile_max_items=3)
    train = train_data._dataset
    users = user_records(profile_settings(config), train, item_records(profile_settings(config), train))
    assert max(len(u["items"]) for u in users.values()) == 3
    assert all(u["n_train_items"] >= len(u["items"]) for u in users.values())


def test_no_leakage_held_out_titles_never_in_user_profiles(tiny, tmp_path):
    config, _, train_data, valid_data, test_data = tiny
    build_profiles(config, train_data._dataset, show_progress=False)
    profiles = ProfileStore(config["profile_dir"]).read_records("user")
    names = titles()
    train_pairs = set(split_pairs(train_data._dataset))
    held_out = split_pairs(valid_data._dataset) + split_pairs(test_data._dataset)
    assert held_out
    for user, item in held_out:
        assert (user, item) not in train_pairs
        title = names[item][0]
        assert not re.search(re.escape(title) + r"\b", profiles[user]["profile"]), (user, item, title)
    # ...while training titles do appear (the check above can fail).
    user = held_out[0][0]
    first_item = user_records(profile_settings(config), train_data._dataset, item_records(profile_settings(config), train_data._dataset))[user]["items"][0]
    assert names[first_item["id"]][0] in profiles[user]["profile"]


def test_build_writes_the_store_format_and_a_second_build_does_nothing(tiny):
    config, _, train_data, _, _ = tiny
    train = train_data._dataset
    summary = build_profiles(config, train, show_progress=False)
    assert summary["generated"] == {"item": train.item_num - 1, "user": train.user_num - 1}
    store = ProfileStore(config["profile_dir"])
    manifest = store.read_manifest()
    assert manifest["split_fingerprint"] == split_fingerprint(train)
    assert manifest["llm"] == "template" and manifest["embedder"] == "sentence-transformers:all-MiniLM-L6-v2"
    assert manifest["dim"] == 384 and manifest["counts"] == {"item": train.item_num - 1, "user": train.user_num - 1}
    ids, vectors, _ = store.read_vectors("item")
    assert vectors.dtype == np.float32 and vectors.shape == (len(ids), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # MiniLM's normalised output
    for line in open(store.file("user.jsonl")):
        record = json.loads(line)
        assert set(record) == {"id", "profile", "reasoning", "source", "prompt_sha"}
        assert record["source"] == "template" and len(record["prompt_sha"]) == 64
    again = build_profiles(config, train, show_progress=False)
    assert again["generated"] == {"item": 0, "user": 0} and again["embedded"] == {"item": 0, "user": 0}


def test_other_split_makes_user_profiles_stale_and_only_they_are_redone(tmp_path):
    config, _, train_data, _, _ = tiny_data(tmp_path, model="LightGCN")
    build_profiles(config, train_data._dataset, show_progress=False)
    store = ProfileStore(config["profile_dir"])
    item_vectors = store.read_vectors("item")[1].copy()
    config2, _, train2, _, _ = tiny_data(tmp_path, model="LightGCN", seed=7)
    assert split_fingerprint(train2._dataset) != split_fingerprint(train_data._dataset)
    status = ProfileBuilder(profile_settings(config2), train2._dataset, show_progress=False).status()
    assert not status["split_matches"] and status["user"]["stale"] > 0 and status["item"]["stale"] == 0
    summary = build_profiles(config2, train2._dataset, show_progress=False)
    assert summary["generated"]["item"] == 0 and summary["embedded"]["item"] == 0
    assert 0 < summary["generated"]["user"] == summary["embedded"]["user"]
    assert np.array_equal(store.read_vectors("item")[1], item_vectors)
    assert store.read_manifest()["split_fingerprint"] == split_fingerprint(train2._dataset)


def test_cli_build_status_show_and_the_run_sees_the_same_split(tmp_path):
    config_file = tmp_path / "tiny.yaml"
    import yaml

    config_file.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    base = [sys.executable, "-m", "recbole_llm.profiles"]
    common = ["--dataset=tiny", f"--config_files={config_file}"]
    out = subprocess.run(base + ["build"] + common, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    status = subprocess.run(base + ["status"] + common, capture_output=True, text=True, cwd=tmp_path)
    assert status.returncode == 0 and "training split: matches" in status.stdout, status.stdout
    user = read_tiny("user")[1][0][0]
    show = subprocess.run(base + ["show", f"--user={user}"] + common, capture_output=True, text=True, cwd=tmp_path)
    assert show.returncode == 0 and "-year-old" in show.stdout
    # A training run with the same config finds the store up to date: nothing regenerated.
    config, _, train_data, _, _ = tiny_data(tmp_path, model="LightGCN")
    summary = build_profiles(config, train_data._dataset, show_progress=False)
    assert summary["generated"] == {"item": 0, "user": 0}


def test_cli_gives_recbole_only_the_keys_its_parser_left(tmp_path, monkeypatch, caplog):
    import yaml

    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    monkeypatch.setattr(sys, "argv", ["prog", "--seed=999"])  # not this call's arguments
    args = cli.parse_args(["show", "--dataset=tiny", f"--config_files={config_file}", "--seed=7", "--user=u1", "--force"])
    with caplog.at_level("WARNING"):
        config = cli.make_config(args)
    # RecBole keys pass through, the command's own options (the verb, --user, --force) do not.
    assert config["seed"] == 7 and config["user"] is None and config["force"] is None
    assert "will not be used in RecBole" not in caplog.text
