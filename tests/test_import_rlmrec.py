r"""The RLMRec importer (recbole_llm/data/import_rlmrec.py) and the rlmrec-* property files.

Small RLMRec folders are written here in the exact formats of RLMRec's data (pickled scipy.sparse
coo_matrix of float 1.0, dicts index -> {"profile", "reasoning"}, float arrays, JSON-lines mappers);
the real Amazon-book split is read from the shared data directory when it is there.
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_llm import Config, get_model
from recbole_llm.data.loader import profile_tensors
from recbole_llm.data.import_rlmrec import RLMRecImportError, import_rlmrec, load_pickle, main
from recbole_llm.profiles.records import split_fingerprint
from recbole_llm.profiles.store import ProfileStore

from conftest import REPO

AMAZON = "/work/shared/data/rlmrec/amazon-book"
SPLIT_FILES = {"train": "trn_mat.pkl", "valid": "val_mat.pkl", "test": "tst_mat.pkl"}
NAME = "rlmrec-fixture"
N_USERS, N_ITEMS, DIM = 7, 6, 8
# User 6 has no interaction in any split (RecBole never sees it); item 5 appears only in test.
PAIRS = {
    "train": [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 3), (3, 2), (3, 4), (4, 0), (5, 3), (5, 4)],
    "valid": [(0, 2), (1, 3), (3, 0)],
    "test": [(0, 3), (2, 5), (5, 0)],
}
USER_TOKENS = [f"A{(7 * i) % 10}Z{i}" for i in range(N_USERS)]  # raw ids unlike the indices
ITEM_TOKENS = [f"00{9 - i}" for i in range(N_ITEMS)]  # leading zeros must survive as tokens


def coo(pairs, shape=(N_USERS, N_ITEMS)):
    rows, cols = zip(*pairs)
    return sp.coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=shape)


def dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_folder(path, mappers=True, profiles=True, vectors=True):
    r"""An RLMRec dataset folder in RLMRec's exact file formats."""
    os.makedirs(path, exist_ok=True)
    for split, filename in SPLIT_FILES.items():
        dump(coo(PAIRS[split]), os.path.join(path, filename))
    if mappers:
        with open(os.path.join(path, "fixture_user.json"), "w") as f:
            f.write("\n".join(json.dumps({"uid": i, "reviewerID": t}) for i, t in enumerate(USER_TOKENS)))
        with open(os.path.join(path, "fixture_item.json"), "w") as f:
            f.write("\n".join(json.dumps({"iid": i, "asin": t}) for i, t in enumerate(ITEM_TOKENS)))
    if profiles:
        dump({i: {"profile": f"user {i} enjoys books", "reasoning": f"why {i}"} for i in range(N_USERS)}, os.path.join(path, "usr_prf.pkl"))
        dump({i: {"profile": f"item {i} suits readers", "reasoning": f"why item {i}"} for i in range(N_ITEMS)}, os.path.join(path, "itm_prf.pkl"))
    if vectors:
        rng = np.random.default_rng(0)
        dump(rng.standard_normal((N_USERS, DIM)), os.path.join(path, "usr_emb_np.pkl"))
        dump(rng.standard_normal((N_ITEMS, DIM)), os.path.join(path, "itm_emb_np.pkl"))
    return str(path)


def fixture_config(out, store, **overrides):
    config = {
        "data_path": str(out),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [5],
        "valid_metric": "Recall@5",
        "epochs": 1,
        "train_batch_size": 4,
        "embedding_size": 8,
        "show_progress": False,
        "state": "WARNING",
        "profile_dir": str(store),
        "checkpoint_dir": str(out / "saved"),
    }
    config.update(overrides)
    return config


def loaded_pairs(dataset):
    feat = dataset.inter_feat
    users = dataset.field2id_token[dataset.uid_field][feat[dataset.uid_field].numpy()]
    items = dataset.field2id_token[dataset.iid_field][feat[dataset.iid_field].numpy()]
    return sorted(zip(users.tolist(), items.tolist()))


# -- the real Amazon-book split -----------------------------------------------------------------


@pytest.fixture(scope="module")
def amazon(tmp_path_factory):
    if not os.path.isfile(os.path.join(AMAZON, "trn_mat.pkl")):
        pytest.skip(f"the RLMRec Amazon-book split is not at {AMAZON}")
    out = tmp_path_factory.mktemp("amazon")
    summary = import_rlmrec(AMAZON, "rlmrec-amazon-book", str(out / "data"), profile_dir=str(out / "profiles"))
    return out, summary


def test_amazon_book_counts_and_raw_ids(amazon):
    out, summary = amazon
    assert (summary["users"], summary["items"]) == (11000, 9332)
    assert summary["interactions"] == {"train": 120464, "valid": 40290, "test": 40106}
    assert summary["profile_dir"] is None and not os.path.exists(out / "profiles")  # interactions only
    with open(os.path.join(AMAZON, "amazon_user.json")) as f:
        reviewers = {json.loads(line)["reviewerID"] for line in f}
    with open(os.path.join(AMAZON, "amazon_item.json")) as f:
        asins = {json.loads(line)["asin"] for line in f}
    train_file = out / "data" / "rlmrec-amazon-book" / "rlmrec-amazon-book.train.inter"
    lines = train_file.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token" and len(lines) == 120464 + 1
    users, items = zip(*(line.split("\t") for line in lines[1:]))
    assert set(users) == reviewers and set(items) == asins  # every user and item has a training pair


def test_amazon_book_recbole_split_equals_source(amazon):
    r"""RecBole, configured by properties/dataset/rlmrec-amazon-book.yaml, loads exactly RLMRec's split."""
    out, summary = amazon
    config = Config(model="LightGCN", dataset="rlmrec-amazon-book", config_dict={"data_path": str(out / "data"), "state": "WARNING"})
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    datasets = create_dataset(config).build()
    with open(os.path.join(AMAZON, "amazon_user.json")) as f:
        reviewer = {r["uid"]: r["reviewerID"] for r in map(json.loads, f)}
    with open(os.path.join(AMAZON, "amazon_item.json")) as f:
        asin = {r["iid"]: r["asin"] for r in map(json.loads, f)}
    for dataset, filename in zip(datasets, SPLIT_FILES.values()):
        with open(os.path.join(AMAZON, filename), "rb") as f:
            matrix = pickle.load(f).tocoo()  # a known file of the shared data directory
        assert matrix.shape == (11000, 9332)
        source = sorted((reviewer[u], asin[i]) for u, i in zip(matrix.row.tolist(), matrix.col.tolist()))
        assert loaded_pairs(dataset) == source
    assert datasets[0].user_num == 11001 and datasets[0].item_num == 9333  # + RecBole's padding id
    assert summary["split_fingerprint"] == split_fingerprint(datasets[0])


@pytest.mark.slow
def test_run_with_the_paper_protocol_on_imported_amazon_book(amazon, tmp_path):
    r"""run_recbole_llm.py on the imported split, with vectors from the importer's store: the paper's
    protocol (dataset YAML) and LightGCN-Con's original settings, one epoch."""
    src = tmp_path / "rlmrec"
    src.mkdir()
    for name in os.listdir(AMAZON):
        if name.endswith((".pkl", ".json")):
            os.symlink(os.path.join(AMAZON, name), src / name)
    rng = np.random.default_rng(0)
    dump(rng.standard_normal((11000, 16)).astype(np.float32), src / "usr_emb_np.pkl")
    dump(rng.standard_normal((9332, 16)).astype(np.float32), src / "itm_emb_np.pkl")
    out = tmp_path / "data"
    import_rlmrec(str(src), "rlmrec-amazon-book", str(out), profile_dir=str(tmp_path / "profiles"))
    command = [
        sys.executable, os.path.join(REPO, "run_recbole_llm.py"), "--model=LightGCN_RLM", "--dataset=rlmrec-amazon-book",
        f"--data_path={out}", f"--profile_dir={tmp_path / 'profiles'}",
        f"--config_files={os.path.join(RLMREC_DIR, 'amazon-book', 'LightGCN_RLM-con.yaml')}",
        # One epoch, evaluated; batch user negatives keep this CPU test short.
        "--epochs=1", "--eval_step=1", "--align_user_negatives=batch", "--show_progress=False",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Using profile store" in log and "building it now" not in log  # the imported store, as written
    assert "embedding_size = 32" in log and "train_batch_size = 4096" in log and "n_layers = 3" in log
    result = log.split("test result")[-1]
    assert all(f"{m}@{k}" in result for m in ("recall", "ndcg") for k in (5, 10, 20))


# -- small folders in RLMRec's formats ----------------------------------------------------------


def test_import_writes_split_and_store_the_hook_accepts(tmp_path):
    src = write_folder(tmp_path / "src")
    out, store_dir = tmp_path / "data", tmp_path / "profiles"
    summary = import_rlmrec(src, NAME, str(out), profile_dir=str(store_dir))
    assert (summary["users"], summary["items"]) == (6, 6)  # user 6 has no interaction
    assert summary["interactions"] == {k: len(v) for k, v in PAIRS.items()}

    config = Config(model="LightGCN_RLM", dataset=NAME, config_dict=fixture_config(out, store_dir))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    for split, data in zip(PAIRS, (train_data, valid_data, test_data)):
        expected = sorted((USER_TOKENS[u], ITEM_TOKENS[i]) for u, i in PAIRS[split])
        assert loaded_pairs(data._dataset) == expected

    store = ProfileStore(store_dir)
    manifest = store.read_manifest()
    assert manifest["llm"] == "rlmrec-import" and os.path.abspath(src) in manifest["embedder"]
    assert manifest["dim"] == DIM and manifest["counts"] == {"user": 6, "item": 6}
    assert manifest["split_fingerprint"] == split_fingerprint(train_data._dataset)
    ids, vectors, _ = store.read_vectors("user")
    assert vectors.dtype == np.float32 and USER_TOKENS[6] not in ids
    records = store.read_records("user")
    assert records[USER_TOKENS[2]]["profile"] == "user 2 enjoys books" and records[USER_TOKENS[2]]["reasoning"] == "why 2"
    assert store.read_records("item")[ITEM_TOKENS[5]]["profile"] == "item 5 suits readers"

    # The hook takes the store as written and maps its rows by raw token.
    user_profile, item_profile = profile_tensors(config, train_data._dataset)
    model = get_model("LightGCN_RLM")(config, train_data._dataset)
    source = {"user": load_pickle(os.path.join(src, "usr_emb_np.pkl")), "item": load_pickle(os.path.join(src, "itm_emb_np.pkl"))}
    for kind, tokens, table, buffer in (
        ("user", USER_TOKENS, user_profile, model.user_profile),
        ("item", ITEM_TOKENS, item_profile, model.item_profile),
    ):
        field = train_data._dataset.uid_field if kind == "user" else train_data._dataset.iid_field
        assert not table[0].any()  # padding
        for internal, token in enumerate(train_data._dataset.field2id_token[field][1:], start=1):
            expected = source[kind][tokens.index(token)].astype(np.float32)
            np.testing.assert_array_equal(table[internal].numpy(), expected)
            np.testing.assert_array_equal(buffer[internal].numpy(), expected)
    losses = model.calculate_loss(next(iter(train_data)))
    assert all(np.isfinite(float(loss)) for loss in losses)


def test_import_without_mappers_or_profiles(tmp_path):
    src = write_folder(tmp_path / "src", mappers=False, profiles=False, vectors=False)
    out = tmp_path / "data"
    summary = import_rlmrec(src, NAME, str(out), profile_dir=str(tmp_path / "profiles"))
    assert summary["profile_dir"] is None and not os.path.exists(tmp_path / "profiles")
    lines = (out / NAME / f"{NAME}.test.inter").read_text().splitlines()
    assert lines[1:] == [f"{u}\t{i}" for u, i in sorted(PAIRS["test"])]  # indices as tokens


def test_vectors_without_texts_and_stored_zero_entries(tmp_path):
    src = write_folder(tmp_path / "src", profiles=False)
    # A stored zero is no interaction (RLMRec reads mat != 0).
    dump(sp.coo_matrix(([1.0, 0.0], ([0, 1], [0, 5])), shape=(N_USERS, N_ITEMS)), os.path.join(src, "val_mat.pkl"))
    summary = import_rlmrec(src, NAME, str(tmp_path / "data"), profile_dir=str(tmp_path / "profiles"))
    assert summary["interactions"]["valid"] == 1
    store = ProfileStore(tmp_path / "profiles")
    assert store.read_records("user") == {} and len(store.read_vectors("item")[0]) == N_ITEMS


def test_texts_without_vectors_are_embedded(tmp_path, monkeypatch):
    from recbole_llm.profiles import embedders

    def fake_embed(self, texts, show_progress=False):  # stands in for the 384-d MiniLM
        return np.array([[len(t), t.count("e"), 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(embedders.SentenceTransformerEmbedder, "embed", fake_embed)
    monkeypatch.setattr(embedders.SentenceTransformerEmbedder, "dim", property(lambda self: 3))  # loads nothing
    src = write_folder(tmp_path / "src", vectors=False)
    profiles = load_pickle(os.path.join(src, "itm_prf.pkl"))
    del profiles[1]  # a failed generation RLMRec dropped
    dump(profiles, os.path.join(src, "itm_prf.pkl"))
    import_rlmrec(src, NAME, str(tmp_path / "data"), profile_dir=str(tmp_path / "profiles"), embedder="my-embedder")
    store = ProfileStore(tmp_path / "profiles")
    assert store.read_manifest()["embedder"] == "sentence-transformers:my-embedder"
    ids, vectors, _ = store.read_vectors("item")
    assert ITEM_TOKENS[1] not in ids and len(ids) == N_ITEMS - 1
    row = ids.index(ITEM_TOKENS[3])
    np.testing.assert_array_equal(vectors[row], fake_embed(None, ["item 3 suits readers"])[0])


def test_existing_output_needs_force(tmp_path):
    src = write_folder(tmp_path / "src")
    args = (src, NAME, str(tmp_path / "data"))
    import_rlmrec(*args, profile_dir=str(tmp_path / "profiles"))
    with pytest.raises(RLMRecImportError, match="--force"):
        import_rlmrec(*args, profile_dir=str(tmp_path / "profiles"))
    summary = import_rlmrec(*args, profile_dir=str(tmp_path / "profiles"), force=True)
    assert summary["vectors"] == {"user": 6, "item": 6}
    for name in ("usr_emb_np.pkl", "itm_emb_np.pkl", "usr_prf.pkl", "itm_prf.pkl"):
        os.remove(os.path.join(src, name))
    import_rlmrec(*args, profile_dir=str(tmp_path / "profiles"), force=True)
    assert not os.path.exists(tmp_path / "profiles" / "manifest.json")  # no stale store left behind


def test_numpy2_pickles_load(tmp_path):
    r"""numpy >= 2 names numpy._core.multiarray in its pickles; those are allowed too."""
    data = pickle.dumps(np.arange(6.0).reshape(2, 3), protocol=2).replace(b"numpy.core.multiarray", b"numpy._core.multiarray")
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "usr_emb_np.pkl"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_pickle(str(path)), np.arange(6.0).reshape(2, 3))


# -- malformed inputs ---------------------------------------------------------------------------


class Exploit:
    r"""A pickle that would run a shell command when loaded by plain pickle.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _bad_split_shape(src):
    dump(coo(PAIRS["valid"], shape=(N_USERS, N_ITEMS + 1)), os.path.join(src, "val_mat.pkl"))


def _mapper_duplicate(src):
    with open(os.path.join(src, "fixture_item.json"), "w") as f:
        f.write("\n".join(json.dumps({"iid": i, "asin": "same" if i < 2 else f"x{i}"}) for i in range(N_ITEMS)))


def _mapper_gap(src):
    with open(os.path.join(src, "fixture_user.json"), "w") as f:
        f.write("\n".join(json.dumps({"uid": i, "reviewerID": f"u{i}"}) for i in range(N_USERS - 1)))


def _out_of_range_coo(src):
    matrix = coo(PAIRS["train"])
    matrix.coords = (matrix.coords[0], np.where(matrix.coords[1] == 4, 40, matrix.coords[1]))  # bypasses the checks
    dump(matrix, os.path.join(src, "trn_mat.pkl"))


MALFORMED = {
    "split is a dict": (lambda s: dump({"rows": [0]}, os.path.join(s, "trn_mat.pkl")), "trn_mat.pkl", "scipy.sparse"),
    "split shapes differ": (_bad_split_shape, "val_mat.pkl", "shape"),
    "split missing": (lambda s: os.remove(os.path.join(s, "tst_mat.pkl")), "tst_mat.pkl", "missing"),
    "truncated pickle": (lambda s: open(os.path.join(s, "val_mat.pkl"), "r+b").truncate(40), "val_mat.pkl", "not a loadable"),
    "index beyond shape": (_out_of_range_coo, "trn_mat.pkl", "not a valid scipy.sparse matrix"),
    "vectors wrong rows": (lambda s: dump(np.zeros((N_USERS + 2, DIM)), os.path.join(s, "usr_emb_np.pkl")), "usr_emb_np.pkl", "one row per user"),
    "vectors are a list": (lambda s: dump([[0.0] * DIM] * N_ITEMS, os.path.join(s, "itm_emb_np.pkl")), "itm_emb_np.pkl", "float numpy array"),
    "vectors are ints": (lambda s: dump(np.zeros((N_ITEMS, DIM), dtype=np.int64), os.path.join(s, "itm_emb_np.pkl")), "itm_emb_np.pkl", "int64"),
    "vectors with NaN": (lambda s: dump(np.full((N_USERS, DIM), np.nan), os.path.join(s, "usr_emb_np.pkl")), "usr_emb_np.pkl", "NaN"),
    "vector dims differ": (lambda s: dump(np.zeros((N_ITEMS, DIM + 1)), os.path.join(s, "itm_emb_np.pkl")), "usr_emb_np.pkl", "same embedder"),
    "item vectors missing": (lambda s: os.remove(os.path.join(s, "itm_emb_np.pkl")), "itm_emb_np.pkl is missing", "same embedder"),
    "texts of one kind": (
        lambda s: [os.remove(os.path.join(s, f)) for f in ("usr_emb_np.pkl", "itm_emb_np.pkl", "itm_prf.pkl")],
        "usr_prf.pkl",
        "one kind only",
    ),
    "profiles a list": (lambda s: dump(["a profile"], os.path.join(s, "usr_prf.pkl")), "usr_prf.pkl", "expected a dict"),
    "profile not a string": (lambda s: dump({0: {"profile": 3}}, os.path.join(s, "usr_prf.pkl")), "usr_prf.pkl", "string 'profile'"),
    "profile key out of range": (lambda s: dump({99: {"profile": "x"}}, os.path.join(s, "itm_prf.pkl")), "itm_prf.pkl", "not one of the 6 item indices"),
    "mapper duplicate ids": (_mapper_duplicate, "fixture_item.json", "raw id 'same' is given to iid 0 and iid 1"),
    "mapper gap": (_mapper_gap, "fixture_user.json", "no raw id"),
    "mapper not json": (lambda s: open(os.path.join(s, "fixture_user.json"), "a").write("\n{oops"), "fixture_user.json, line 8", "not JSON"),
    "forbidden class": (lambda s: dump(Exploit(os.path.join(s, "pwned")), os.path.join(s, "usr_prf.pkl")), "usr_prf.pkl", "system"),
    "forbidden container": (
        lambda s: dump(__import__("collections").OrderedDict(m=coo(PAIRS["test"])), os.path.join(s, "tst_mat.pkl")),
        "tst_mat.pkl",
        "collections.OrderedDict",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_names_file_and_problem(tmp_path, case):
    corrupt, where, what = MALFORMED[case]
    src = write_folder(tmp_path / "src")
    corrupt(src)
    with pytest.raises(RLMRecImportError) as error:
        import_rlmrec(src, NAME, str(tmp_path / "data"), profile_dir=str(tmp_path / "profiles"))
    assert where in str(error.value) and what in str(error.value)
    assert not os.path.exists(os.path.join(src, "pwned"))  # nothing ran
    assert not os.path.exists(tmp_path / "profiles" / "manifest.json")
    assert not os.path.exists(tmp_path / "data" / NAME)  # inputs are checked before anything is written


def test_forbidden_class_refused_before_it_runs(tmp_path):
    path = tmp_path / "itm_emb_np.pkl"
    dump(Exploit(tmp_path / "pwned"), path)
    with pytest.raises(RLMRecImportError, match=r"refused"):
        load_pickle(str(path))
    assert not (tmp_path / "pwned").exists()


def test_cli(tmp_path, capsys):
    src = write_folder(tmp_path / "src")
    argv = [src, "--name", NAME, "--out", str(tmp_path / "data"), "--profile-dir", str(tmp_path / "profiles")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "6 users, 6 items, 11 / 3 / 3" in printed and f"--profile_dir={tmp_path / 'profiles'}" in printed
    os.remove(os.path.join(src, "itm_emb_np.pkl"))
    result = subprocess.run(
        [sys.executable, "-m", "recbole_llm.data.import_rlmrec", *argv, "--force"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "itm_emb_np.pkl is missing" in result.stderr


# -- property files -----------------------------------------------------------------------------

PROTOCOL = {
    "embedding_size": 32, "train_batch_size": 4096, "learning_rate": 0.001, "learner": "adam", "weight_decay": 0.0,
    "topk": [5, 10, 20], "metrics": ["Recall", "NDCG"], "valid_metric": "Recall@20", "eval_step": 3,
    "stopping_step": 5, "seed": 2023, "benchmark_filename": ["train", "valid", "test"],
}
# FACTS.md / RLMRec encoder/config/modelconf, in RecBole's keys.
ORIGINAL = {
    ("amazon-book", "LightGCN_RLM-con"): {"align": "con", "n_layers": 3, "reg_weight": 1e-7, "align_weight": 1e-2, "align_temperature": 0.2, "align_user_negatives": "all"},
    ("yelp", "LightGCN_RLM-con"): {"align": "con", "n_layers": 3, "reg_weight": 1e-7, "align_weight": 1e-2, "align_temperature": 0.2},
    ("steam", "LightGCN_RLM-con"): {"align": "con", "n_layers": 3, "reg_weight": 1e-8, "align_weight": 1e-3, "align_temperature": 0.1},
    ("amazon-book", "LightGCN_RLM-gen"): {"align": "gen", "n_layers": 2, "reg_weight": 1e-7, "mask_ratio": 0.15, "align_weight": 0.1, "align_temperature": 0.5},
    ("yelp", "LightGCN_RLM-gen"): {"align": "gen", "n_layers": 2, "reg_weight": 1e-7, "mask_ratio": 0.05, "align_weight": 0.01, "align_temperature": 0.1},
    ("steam", "LightGCN_RLM-gen"): {"align": "gen", "n_layers": 2, "reg_weight": 1e-6, "mask_ratio": 0.15, "align_weight": 0.1, "align_temperature": 0.5},
    ("amazon-book", "SGL_RLM-con"): {"n_layers": 3, "reg_weight": 1e-5, "ssl_weight": 0.1, "ssl_tau": 0.2, "align_weight": 1e-2, "align_temperature": 0.5, "drop_ratio": 0.2, "type": "ED"},
    ("yelp", "SGL_RLM-con"): {"n_layers": 3, "reg_weight": 1e-5, "ssl_weight": 0.1, "ssl_tau": 0.2, "align_weight": 1e-2, "align_temperature": 1.0, "drop_ratio": 0.2},
    ("steam", "SGL_RLM-con"): {"n_layers": 3, "reg_weight": 1e-5, "ssl_weight": 0.1, "ssl_tau": 0.5, "align_weight": 1e-2, "align_temperature": 1.0, "drop_ratio": 0.2},
    ("amazon-book", "SGL_RLM-gen"): {"align": "gen", "n_layers": 3, "reg_weight": 1e-5, "ssl_weight": 0.1, "ssl_tau": 0.2, "mask_ratio": 0.2, "align_weight": 0.1, "align_temperature": 0.2},
    ("yelp", "SGL_RLM-gen"): {"align": "gen", "n_layers": 3, "reg_weight": 1e-5, "ssl_weight": 0.1, "ssl_tau": 0.2, "mask_ratio": 0.15, "align_weight": 0.1, "align_temperature": 0.2},
    ("steam", "SGL_RLM-gen"): {"align": "gen", "n_layers": 3, "reg_weight": 1e-5, "ssl_weight": 0.1, "ssl_tau": 0.5, "mask_ratio": 0.1, "align_weight": 0.1, "align_temperature": 0.2},
    ("amazon-book", "LightGCN"): {"n_layers": 3, "reg_weight": 1e-6},
    ("steam", "LightGCN"): {"n_layers": 2, "reg_weight": 1e-6},
    ("yelp", "SGL"): {"n_layers": 3, "reg_weight": 1e-6, "ssl_weight": 1e-3, "ssl_tau": 0.1, "drop_ratio": 0.2},
    ("steam", "SGL"): {"n_layers": 2, "reg_weight": 1e-5, "ssl_weight": 0.1, "ssl_tau": 0.5},
}
RLMREC_DIR = os.path.join(REPO, "properties", "rlmrec")
MODEL_FILES = sorted((d, f[: -len(".yaml")]) for d in os.listdir(RLMREC_DIR) for f in os.listdir(os.path.join(RLMREC_DIR, d)))


@pytest.mark.parametrize("dataset", ["amazon-book", "yelp", "steam"])
def test_dataset_properties_set_the_paper_protocol(dataset):
    config = Config(model="LightGCN_RLM", dataset=f"rlmrec-{dataset}")
    assert {k: config[k] for k in PROTOCOL} == PROTOCOL
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}  # all-item ranking
    assert config["load_col"] == {"inter": ["user_id", "item_id"]}
    assert config["user_inter_num_interval"] == config["item_inter_num_interval"] == "[0,inf)"


def test_every_original_setting_has_a_file():
    assert set(ORIGINAL) <= set(MODEL_FILES)
    assert {f for _, f in MODEL_FILES} == {"LightGCN", "LightGCN_RLM-con", "LightGCN_RLM-gen", "SGL", "SGL_RLM-con", "SGL_RLM-gen"}
    assert len(MODEL_FILES) == 18


@pytest.mark.parametrize("dataset,name", MODEL_FILES)
def test_model_property_file(dataset, name):
    path = os.path.join(RLMREC_DIR, dataset, f"{name}.yaml")
    model = name.split("-")[0]
    defaults = Config(model=model, dataset=f"rlmrec-{dataset}")
    with open(path) as f:
        keys = yaml.safe_load(f)
    assert keys and set(keys) <= set(defaults.final_config_dict)  # no misspelt key
    config = Config(model=model, dataset=f"rlmrec-{dataset}", config_file_list=[path])
    expected = ORIGINAL.get((dataset, name), {})
    assert {k: config[k] for k in expected} == expected
    assert config["embedding_size"] == 32 and config["seed"] == 2023
    if model.startswith("LightGCN"):
        assert config["layer_combination"] == "sum"  # RLMRec's LightGCN
        assert (config["edge_dropout"], config["reg_scope"]) == (0.2, "all")  # its keep_rate 0.8 and reg_params
    if model.startswith("SGL"):  # RLMRec's SGL: its LightGCN's sum and reg_params, views per step, batch means
        rlmrec_sgl = {"type": "ED", "drop_ratio": 0.2, "view_sampling": "step", "layer_combination": "sum",
                      "loss_reduction": "mean", "ssl_neg_items": True, "reg_scope": "all"}
        assert {k: config[k] for k in rlmrec_sgl} == rlmrec_sgl
        assert config["mask_views"] == ("all" if name.endswith("-gen") else "first")  # sgl_gene masks every view
    if "align" in keys:
        assert name.endswith(config["align"])
        assert config["align_bias_init"] == "pytorch"  # RLMRec's MLPs keep PyTorch's default biases


def test_force_with_a_bad_embedder_keeps_the_old_store(tmp_path):
    r"""Issue 16.8: --force used to clear the old store before loading --embedder; a name that does
    not load then ended in a traceback with only .lock left."""
    src = write_folder(tmp_path / "src")
    argv = [src, "--name", NAME, "--out", str(tmp_path / "data"), "--profile-dir", str(tmp_path / "profiles")]
    assert main(argv) == 0
    store = ProfileStore(tmp_path / "profiles")
    before = {kind: store.read_vectors(kind) for kind in ("user", "item")}
    for name in ("usr_emb_np.pkl", "itm_emb_np.pkl"):  # texts only: the import must embed them
        os.remove(os.path.join(src, name))
    result = subprocess.run(
        [sys.executable, "-m", "recbole_llm.data.import_rlmrec", *argv, "--force", f"--embedder={tmp_path / 'no-such-model'}"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--embedder" in result.stderr and "no-such-model" in result.stderr and "Nothing was written or removed" in result.stderr
    assert store.read_manifest()["llm"] == "rlmrec-import"
    for kind, (ids, vectors, shas) in before.items():
        after = store.read_vectors(kind)
        assert after[0] == ids and np.array_equal(after[1], vectors) and after[2] == shas
