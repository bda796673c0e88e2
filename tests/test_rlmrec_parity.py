r"""The parity harness's own pieces (benchmarks/rlmrec_parity.py), without the original RLMRec code:
the split writer, the vector export order, the parser of the original's log and the table."""

import collections
import json
import os
import sys

import numpy as np
import pytest
import yaml

from conftest import FIXTURES, REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import rlmrec_parity as parity  # noqa: E402

from recbole_llm.data import import_rlmrec  # noqa: E402
from recbole_llm.profiles.store import ProfileStore  # noqa: E402

TINY_INTER = os.path.join(FIXTURES, "tiny", "tiny.inter")


def tiny_pairs():
    return parity.read_pairs(TINY_INTER)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_split_partitions_each_users_pairs_by_the_ratios_and_is_reproducible_by_seed(kind):
    pairs = tiny_pairs()
    ratios = parity.SPLIT_RATIOS[kind]
    split = parity.split_pairs(pairs, ratios, seed=7)
    assert parity.split_pairs(list(reversed(pairs)), ratios, seed=7) == split  # the pairs, not their file order
    assert parity.split_pairs(pairs, ratios, seed=8) != split
    everything = [p for part in parity.PARTS for p in split[part]]
    assert sorted(everything) == sorted(pairs) and len(set(everything)) == len(everything)
    per_user = collections.Counter(u for u, _ in pairs)
    for part, ratio in zip(parity.PARTS, ratios):
        counts = collections.Counter(u for u, _ in split[part])
        assert set(counts) == set(per_user)  # every user in every part
        if part != "test":
            for user, n in per_user.items():
                assert counts[user] == min(max(1, round(n * ratio)), n - (2 if part == "train" else 1))


def test_both_formats_hold_the_same_pairs_and_recbole_loads_them_exactly(tmp_path):
    split = parity.split_pairs(tiny_pairs(), parity.SPLIT_RATIOS["sparse"], seed=3)
    order = parity.write_split(split, "par", str(tmp_path / "data"), str(tmp_path / "rlmrec"))
    assert order == parity.id_order(split)
    # RecBole benchmark files
    for part in parity.PARTS:
        assert parity.read_pairs(str(tmp_path / "data" / "par" / f"par.{part}.inter")) == split[part]
    # RLMRec's folder, read as RLMRec's importer reads it (matrices + mappers -> raw ids)
    matrices = import_rlmrec.read_split(str(tmp_path / "rlmrec"))
    tokens = {}
    for kind in ("user", "item"):
        tokens[kind], mapper = import_rlmrec.id_tokens(str(tmp_path / "rlmrec"), kind, len(order[kind]))
        assert mapper is not None and tokens[kind] == order[kind]
    for part in parity.PARTS:
        rows, cols = import_rlmrec.matrix_pairs(matrices[part])
        assert sorted(zip((tokens["user"][r] for r in rows), (tokens["item"][c] for c in cols))) == sorted(split[part])
    # and RecBole loads exactly those pairs from the benchmark files (no filtering, no re-split)
    datasets = import_rlmrec.recbole_split(str(tmp_path / "data"), "par")
    import_rlmrec.check_round_trip(datasets, matrices, tokens, str(tmp_path / "data" / "par"))


def test_vectors_are_exported_in_rlmrecs_id_order(tmp_path):
    order = {"user": ["2", "10", "u7"], "item": ["1", "3", "20", "b"]}
    store = ProfileStore(str(tmp_path / "store"))
    rng = np.random.default_rng(0)
    stored = {}
    for kind, tokens in order.items():
        shuffled = list(reversed(tokens)) + ["not-in-split"]  # the store's own order differs from RLMRec's
        vectors = rng.normal(size=(len(shuffled), 5)).astype(np.float32)
        stored[kind] = dict(zip(shuffled, vectors))
        store.write_vectors(kind, shuffled, vectors, [""] * len(shuffled), embedder="test")
    exported = parity.export_vectors(store.path, order, str(tmp_path))
    for kind, tokens in order.items():
        on_disk = import_rlmrec.read_vectors(str(tmp_path / parity.VECTOR_FILES[kind]), kind, len(tokens))
        assert np.array_equal(on_disk, exported[kind])
        for k, token in enumerate(tokens):
            assert np.array_equal(on_disk[k], stored[kind][token])


def test_a_split_id_without_a_vector_is_refused(tmp_path):
    store = ProfileStore(str(tmp_path / "store"))
    for kind in ("user", "item"):
        store.write_vectors(kind, ["1"], np.ones((1, 3), dtype=np.float32), [""], embedder="test")
    with pytest.raises(ValueError, match=r"1 users of the split have no vector \(e.g. \['2'\]\)"):
        parity.export_vectors(store.path, {"user": ["1", "2"], "item": ["1"]}, str(tmp_path))


ORIGINAL_LOG = """\
{'optimizer': {'name': 'adam', 'lr': 0.001}, 'train': {'epoch': 3000, 'test_step': 3, 'patience': 5}}
Epoch   0 Validation set [recall@5: 0.0100 recall@10: 0.0200 recall@20: 0.0300 ] [ndcg@5: 0.0400 ndcg@10: 0.0500 ndcg@20: 0.0600 ] 
Epoch   3 Validation set [recall@5: 0.1100 recall@10: 0.1200 recall@20: 0.1300 ] [ndcg@5: 0.1400 ndcg@10: 0.1500 ndcg@20: 0.1600 ] 
Epoch   6 Validation set [recall@5: 0.1000 recall@10: 0.1100 recall@20: 0.1250 ] [ndcg@5: 0.1300 ndcg@10: 0.1400 ndcg@20: 0.1500 ] 
[recall@5: 0.1100 recall@10: 0.1200 recall@20: 0.1300 ] [ndcg@5: 0.1400 ndcg@10: 0.1500 ndcg@20: 0.1600 ] 
[recall@5: 0.2100 recall@10: 0.2200 recall@20: 0.2345 ] [ndcg@5: 0.2400 ndcg@10: 0.2500 ndcg@20: 0.2678 ] 
Save model parameters to ./encoder/checkpoint/lightgcn_plus/lightgcn_plus-amazon-2020.pth
Best Epoch 3. Final test result: {'recall': array([0.21, 0.22, 0.2345]), 'ndcg': array([0.24, 0.25,
       0.2678])}.
"""


def test_the_original_log_parser_takes_the_last_metric_line_as_test_and_counts_epochs():
    parsed = parity.parse_original_log(ORIGINAL_LOG)
    assert parsed["test"] == {"recall@5": 0.21, "recall@10": 0.22, "recall@20": 0.2345,
                              "ndcg@5": 0.24, "ndcg@10": 0.25, "ndcg@20": 0.2678}  # fmt: skip
    assert parsed["valid"]["recall@20"] == 0.13
    assert parsed["best_epoch"] == 3 and parsed["epochs"] == 7


def test_a_log_without_a_final_test_result_is_refused_with_its_last_lines():
    unfinished = "\n".join(ORIGINAL_LOG.splitlines()[:4]) + "\nTraceback (most recent call last):\nRuntimeError: boom\n"
    with pytest.raises(ValueError, match="(?s)no final test result.*RuntimeError: boom"):
        parity.parse_original_log(unfinished)


def record(side, variant, seed, recall, ndcg, epochs=30, split="s", **backbone):
    return {"split": split, **backbone, "side": side, "variant": variant, "seed": seed,
            "test": {"recall@20": recall, "ndcg@20": ndcg}, "epochs": epochs}  # fmt: skip


def test_the_table_gives_means_spreads_seeds_and_gains_over_each_sides_own_base():
    records = [
        record("original", "base", 1, 0.20, 0.10), record("original", "base", 2, 0.22, 0.12),
        record("original", "con", 1, 0.22, 0.11), record("original", "con", 2, 0.24, 0.13),
        record("plugin", "base", 1, 0.30, 0.20, epochs=12), record("plugin", "gen", 1, 0.27, 0.21, epochs=9),
        record("plugin", "base", 1, 0.10, 0.10, backbone="sgl"), record("plugin", "con", 1, 0.11, 0.10, backbone="sgl"),
    ]  # fmt: skip
    rows = {tuple(c.strip() for c in line.split("|")[1:5]): [c.strip() for c in line.split("|")[5:-1]]
            for line in parity.format_table(records).splitlines()[2:]}  # fmt: skip
    assert set(rows) == {("s", "LightGCN", "original", "base"), ("s", "LightGCN", "original", "con"),
                         ("s", "LightGCN", "plugin", "base"), ("s", "LightGCN", "plugin", "gen"),
                         ("s", "SGL", "plugin", "base"), ("s", "SGL", "plugin", "con")}  # fmt: skip
    assert rows[("s", "LightGCN", "original", "base")] == ["1 2", "0.2100 ± 0.0141", "", "0.1100 ± 0.0141", "", "0.2000 0.2200", "30 30"]
    # gains: 0.23 / 0.21 - 1 = +9.5%, 0.12 / 0.11 - 1 = +9.1%; the plugin's against the plugin's base
    assert rows[("s", "LightGCN", "original", "con")][1:5] == ["0.2300 ± 0.0141", "+9.5%", "0.1200 ± 0.0141", "+9.1%"]
    assert rows[("s", "LightGCN", "plugin", "gen")] == ["1", "0.2700 ± 0.0000", "-10.0%", "0.2100 ± 0.0000", "+5.0%", "0.2700", "9"]
    # each backbone against its own base (records without a backbone are LightGCN's)
    assert rows[("s", "SGL", "plugin", "con")][1:3] == ["0.1100 ± 0.0000", "+10.0%"]


@pytest.mark.parametrize("backbone", sorted(parity.BACKBONES))
def test_each_backbones_variants_name_an_original_model_and_a_plugin_recipe(backbone):
    with open(parity.PATCH) as f:
        patch = f.read()
    for variant in parity.VARIANTS:
        model, recipe = parity.plugin_run(backbone, variant)
        assert os.path.isfile(os.path.join(parity.RECIPES, recipe)), recipe
        with open(os.path.join(parity.RECIPES, recipe)) as f:
            keys = yaml.safe_load(f)
        assert keys.get("align", "none") == {"base": "none"}.get(variant, variant)
        assert model == parity.BACKBONES[backbone] + ("" if variant == "base" else "_RLM")
        # the CPU patch reaches every aligned original model the harness runs (they put the profiles on CUDA)
        patched = f"b/encoder/models/general_cf/{parity.original_model(backbone, variant)}.py" in patch
        assert patched == (variant != "base")


def test_the_table_can_be_narrowed_to_splits_backbones_and_sides(tmp_path, capsys):
    path = tmp_path / "record.jsonl"
    records = [
        record("original", "base", 1, 0.2, 0.1, split="ml100k-sparse-2020"),
        record("plugin", "base", 1, 0.3, 0.2, split="ml100k-sparse-2020"),
        record("plugin[a=1]", "base", 1, 0.4, 0.2, split="ml100k-sparse-2020"),
        record("plugin[a=1]", "base", 1, 0.5, 0.2, split="ml100k-dense-2020"),
        record("plugin[a=1]", "base", 1, 0.6, 0.2, split="ml100k-sparse-2020", backbone="sgl"),
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    def shown(*argv):
        assert parity.main(["--table", str(path), *argv]) == 0
        return sorted(float(line.split("|")[6].split()[0]) for line in capsys.readouterr().out.splitlines()[2:])

    assert shown() == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert shown("--sides", "plugin", "--plugin-set", "a=1") == [0.4, 0.5, 0.6]
    assert shown("--sides", "original", "plugin", "--splits", "sparse", "--backbones", "lightgcn") == [0.2, 0.3]
    assert shown("--backbones", "sgl") == [0.6]
