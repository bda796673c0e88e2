import json
import logging
import os

import numpy as np
import pytest
import torch

from conftest import tiny_data
from recbole_llm.data.loader import profile_tensors, reduce_dim, reduce_profiles
from recbole_llm.profiles.records import split_fingerprint
from recbole_llm.profiles.store import ProfileStore, ProfileStoreError, text_sha


def record(token, text="p"):
    return {"id": token, "profile": text, "reasoning": None, "source": "template", "prompt_sha": "x"}


def token_vector(token, dim=5):
    rng = np.random.default_rng(abs(hash(token)) % (2**32))
    return rng.standard_normal(dim).astype(np.float32)


def write_store(path, dataset, users=None, items=None, dim=5, fingerprint=None, shuffle_seed=0):
    r"""A store as an importer would write it: rows in shuffled order, vectors derived from tokens."""
    store = ProfileStore(path)
    rng = np.random.default_rng(shuffle_seed)
    for kind, field, tokens in (("user", dataset.uid_field, users), ("item", dataset.iid_field, items)):
        if tokens is None:
            tokens = list(dataset.field2id_token[field][1:])
        tokens = [tokens[i] for i in rng.permutation(len(tokens))]
        vectors = np.stack([token_vector(t, dim) for t in tokens]) if tokens else np.zeros((0, dim), np.float32)
        store.write_vectors(kind, tokens, vectors, [text_sha(t) for t in tokens])
    store.write_manifest({
        "dataset": "tiny", "split_fingerprint": fingerprint or split_fingerprint(dataset),
        "llm": "imported", "embedder": "imported", "dim": dim, "counts": {},
    })
    return store


@pytest.fixture
def train(tmp_path):
    config, dataset, train_data, _, _ = tiny_data(tmp_path, model="LightGCN", profile_dir=str(tmp_path / "store"))
    return config, train_data._dataset


def test_rows_follow_internal_ids_not_file_order(train, tmp_path):
    config, dataset = train
    write_store(tmp_path / "store", dataset)
    user, item = profile_tensors(config, dataset)
    assert user.dtype == torch.float32 and user.shape == (dataset.user_num, 5) and item.shape == (dataset.item_num, 5)
    assert torch.all(user[0] == 0) and torch.all(item[0] == 0)  # padding
    for internal, token in enumerate(dataset.field2id_token[dataset.iid_field][1:], start=1):
        assert np.allclose(item[internal].numpy(), token_vector(token))
    for internal, token in enumerate(dataset.field2id_token[dataset.uid_field][1:], start=1):
        assert np.allclose(user[internal].numpy(), token_vector(token))


def test_missing_profiles_error_names_count_examples_and_fix(train, tmp_path):
    config, dataset = train
    items = list(dataset.field2id_token[dataset.iid_field][1:])
    write_store(tmp_path / "store", dataset, items=items[3:])
    with pytest.raises(ProfileStoreError) as e:
        profile_tensors(config, dataset)
    message = str(e.value)
    assert f"3 of {len(items)} items" in message and items[0] in message and "profile_missing" in message


@pytest.mark.parametrize("policy", ["zero", "mean"])
def test_missing_profiles_zero_or_mean(train, tmp_path, policy):
    config, dataset = train
    items = list(dataset.field2id_token[dataset.iid_field][1:])
    write_store(tmp_path / "store", dataset, items=items[3:])
    config["profile_missing"] = policy
    _, item = profile_tensors(config, dataset)
    present = np.stack([token_vector(t) for t in items[3:]])
    expected = np.zeros(5) if policy == "zero" else present.mean(axis=0)
    for internal in range(1, 4):
        assert np.allclose(item[internal].numpy(), expected, atol=1e-6)


def test_ids_the_dataset_lacks_are_an_error(train, tmp_path):
    config, dataset = train
    users = list(dataset.field2id_token[dataset.uid_field][1:]) + ["ghost1", "ghost2"]
    write_store(tmp_path / "store", dataset, users=users)
    with pytest.raises(ProfileStoreError, match=r"2 user ids are not in dataset tiny.*ghost"):
        profile_tensors(config, dataset)


def test_nan_rows_are_an_error(train, tmp_path):
    config, dataset = train
    store = write_store(tmp_path / "store", dataset)
    ids, vectors, shas = store.read_vectors("item")
    vectors[2, 1] = np.nan
    store.write_vectors("item", ids, vectors, shas)
    with pytest.raises(ProfileStoreError, match=rf"1 item rows hold NaN or inf \(ids e.g. \['{ids[2]}'\]\)"):
        profile_tensors(config, dataset)


def test_dimension_mismatch_is_an_error(train, tmp_path):
    config, dataset = train
    store = write_store(tmp_path / "store", dataset)
    ids, vectors, shas = store.read_vectors("item")
    store.write_vectors("item", ids, vectors[:, :3], shas)
    with pytest.raises(ProfileStoreError, match="user.npy has dim 5 but .*item.npy has dim 3"):
        profile_tensors(config, dataset)


def test_rows_not_matching_ids_is_an_error(train, tmp_path):
    config, dataset = train
    store = write_store(tmp_path / "store", dataset)
    np.save(store.file("item.npy"), np.zeros((3, 5), np.float32))
    with pytest.raises(ProfileStoreError, match=r"item.npy do\(es\) not match .*item_vectors.json.*no LLM request.*profiles embed --dataset=tiny"):
        profile_tensors(config, dataset)
    # A format-1 store (no seals) is still read, with the shape checked.
    store.write_manifest({**store.read_manifest(), "format_version": 1})
    os.remove(store.kind_file("item", "seal"))
    with pytest.raises(ProfileStoreError, match=r"item.npy: shape \(3, 5\) does not match the \d+ ids.*profiles embed"):
        profile_tensors(config, dataset)


def test_foreign_store_of_another_split_is_refused(train, tmp_path):
    config, dataset = train
    write_store(tmp_path / "store", dataset, fingerprint="0" * 64)
    with pytest.raises(ProfileStoreError, match="another training split"):
        profile_tensors(config, dataset)


def test_records_survive_a_cut_last_line(tmp_path):
    store = ProfileStore(tmp_path)
    store.append("item", record("a"))
    store.append("item", record("b"))
    with open(store.file("item.jsonl"), "a") as f:
        f.write('{"id": "c", "profile": "hal')  # a writer killed mid-line
    assert list(store.read_records("item")) == ["a", "b"]
    store.append("item", record("c"))
    assert list(store.read_records("item")) == ["a", "b", "c"]


def test_later_record_supersedes_and_corrupt_middle_line_is_an_error(tmp_path):
    store = ProfileStore(tmp_path)
    store.append("user", record("a", "old"))
    store.append("user", record("a", "new"))
    assert store.read_records("user")["a"]["profile"] == "new"
    with open(store.file("user.jsonl"), "a") as f:
        f.write("garbage\n")
    store.append("user", record("b"))
    with pytest.raises(ProfileStoreError, match=r"user.jsonl, line 3"):
        store.read_records("user")


def test_missing_store_message(tmp_path):
    with pytest.raises(ProfileStoreError, match="profiles build"):
        ProfileStore(tmp_path / "nothing").read_manifest()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ProfileStoreError, match="format_version 99"):
        ProfileStore(tmp_path / "bad").read_manifest()


def test_clear_removes_the_stores_files_only(tmp_path):
    store = ProfileStore(tmp_path)
    store.write_vectors("item", ["1", "2"], np.zeros((2, 3), dtype=np.float32), ["a", "b"])
    store.rewrite_failures("user", {"7": {"id": "7", "error": "x", "prompt_sha": None, "source": "openai"}})
    store.write_manifest({"format_version": 1})
    (tmp_path / "notes.txt").write_text("the user's own file")
    store.clear()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
    assert not store.exists()


def test_reduced_profiles_keep_the_best_rank_k_dot_products(caplog):
    rng = np.random.default_rng(0)
    user, item = rng.standard_normal((7, 6)).astype(np.float32), rng.standard_normal((9, 6)).astype(np.float32)
    nodes = np.concatenate([user, item]).astype(np.float64)
    with caplog.at_level("INFO"):
        reduced_user, reduced_item = reduce_profiles(user, item, 3, "store")
    assert reduced_user.dtype == np.float32 and reduced_user.shape == (7, 3) and reduced_item.shape == (9, 3)
    reduced = np.concatenate([reduced_user, reduced_item])
    # Eckart-Young: the best rank-3 approximation of the Gram matrix, from the SVD of all nodes.
    u, s, _ = np.linalg.svd(nodes, full_matrices=False)
    best = (u[:, :3] * s[:3] ** 2) @ u[:, :3].T
    assert np.allclose(reduced @ reduced.T, best, atol=1e-4)
    kept = (s[:3] ** 2).sum() / (s**2).sum()
    assert f"6 -> 3 dims, keeping {kept:.1%}" in caplog.text


def test_reduced_profiles_of_low_rank_vectors_are_exact():
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((2, 5))
    user = (rng.standard_normal((4, 2)) @ basis).astype(np.float32)
    item = (rng.standard_normal((6, 2)) @ basis).astype(np.float32)
    user[0] = 0.0  # padding row stays zero
    reduced_user, reduced_item = reduce_profiles(user, item, 2, "store")
    assert np.all(reduced_user[0] == 0)
    for original, reduced in ((user, reduced_user), (item, reduced_item)):
        assert np.allclose(reduced @ reduced.T, original @ original.T, atol=1e-4)


def test_reduced_profiles_do_not_depend_on_the_solvers_signs(monkeypatch):
    rng = np.random.default_rng(2)
    user, item = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    expected = reduce_profiles(user, item, 2, "store")
    eigh = np.linalg.eigh

    def flipped_eigh(matrix):
        energy, basis = eigh(matrix)
        return energy, basis * np.array([1.0, -1.0, -1.0, 1.0])

    monkeypatch.setattr(np.linalg, "eigh", flipped_eigh)
    for reduced, wanted in zip(reduce_profiles(user, item, 2, "store"), expected):
        assert np.allclose(reduced, wanted, atol=1e-6)


@pytest.mark.parametrize("dim", [5, 8])
def test_a_reduce_dim_of_at_least_the_vectors_width_keeps_them_whole(dim, caplog):
    # profile_reduce_dim is a default (64): a narrower embedder's vectors are used as they are.
    user, item = np.ones((3, 5), np.float32), np.full((4, 5), 2.0, np.float32)
    with caplog.at_level(logging.INFO):
        reduced_user, reduced_item = reduce_profiles(user, item, dim, "my/store")
    assert reduced_user is user and reduced_item is item
    assert "the profile vectors of my/store have 5 dims already; used whole" in caplog.text


@pytest.mark.parametrize("align, dim", [("con", 64), ("gen", None), ("none", 64)])
def test_auto_reduce_dim_narrows_for_con_and_keeps_gens_whole(align, dim):
    assert reduce_dim({"profile_reduce_dim": "auto", "align": align}) == dim
    assert reduce_dim({"profile_reduce_dim": 16, "align": align}) == 16
    assert reduce_dim({"profile_reduce_dim": None, "align": align}) is None


def test_profile_tensors_reduce_when_asked(train, tmp_path):
    config, dataset = train
    write_store(tmp_path / "store", dataset)
    whole_user, whole_item = profile_tensors(config, dataset)
    config["profile_reduce_dim"] = 2
    user, item = profile_tensors(config, dataset)
    assert user.shape == (dataset.user_num, 2) and item.shape == (dataset.item_num, 2)
    assert torch.all(user[0] == 0) and torch.all(item[0] == 0)
    expected_user, expected_item = reduce_profiles(whole_user.numpy(), whole_item.numpy(), 2, "store")
    assert np.allclose(user.numpy(), expected_user) and np.allclose(item.numpy(), expected_item)
