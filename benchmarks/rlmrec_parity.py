r"""Parity of the plugin's RLMRec gains with the original RLMRec code (HKUDS/RLMRec) on the same data.

Both sides train a backbone (``--backbones``: LightGCN, SGL), its Con form and its Gen form with
RLMRec's Amazon-book hyperparameters on the SAME split files and the SAME profile vectors, over
several seeds; one markdown table shows test Recall@20 / NDCG@20 (mean ± std, per seed), epochs, and
each side's gain over its own base.

* Splits of RecBole's bundled ml-100k, per user at random (``--split-seed``): ``dense`` 80/10/10,
  ``sparse`` 15/10/75 (as benchmarks/configs/ml-100k-sparse.yaml). Each is written from one list
  of pairs as RecBole benchmark files (``NAME.{train,valid,test}.inter``, with ml-100k's ``.item``
  and ``.user`` for the profiles) and as RLMRec's data folder (``trn_mat.pkl val_mat.pkl
  tst_mat.pkl``, row/column = index of the sorted raw ids, and the ``*_user.json`` / ``*_item.json``
  mappers that recbole_llm.data.import_rlmrec reads).
* Profile vectors: template profiles + the default MiniLM embedder, built ONCE per split through the
  plugin (``ensure_profiles``), then exported, row for row in RLMRec's id order, to
  ``usr_emb_np.pkl`` / ``itm_emb_np.pkl``.
* Original: a copy of ``--rlmrec-dir``'s ``encoder/`` (HKUDS/RLMRec at commit 2241375) with
  benchmarks/rlmrec_parity/rlmrec-cpu.patch applied (CPU, ``--data_dir``); models lightgcn,
  lightgcn_plus (Con), lightgcn_gene (Gen) and sgl, sgl_plus, sgl_gene, run as ``--dataset amazon``
  so that the models read their ``amazon:`` hyperparameters. Its final test line is parsed.
* Plugin: LightGCN / LightGCN_RLM and SGL / SGL_RLM (con, gen) with
  properties/rlmrec/amazon-book/*.yaml and the protocol in benchmarks/rlmrec_parity/protocol.yaml;
  ``--plugin-set key=value ...`` adds keys to every plugin run (its side is then labelled
  ``plugin[key=value ...]``).

    git clone https://github.com/HKUDS/RLMRec && git -C RLMRec checkout 2241375
    OMP_NUM_THREADS=1 python benchmarks/rlmrec_parity.py --rlmrec-dir RLMRec --record parity.jsonl \
        --splits dense sparse --seeds 2020 2021 2022 --sides original plugin
    OMP_NUM_THREADS=1 python benchmarks/rlmrec_parity.py --rlmrec-dir RLMRec --record parity.jsonl \
        --backbones sgl --splits sparse
    python benchmarks/rlmrec_parity.py --table parity.jsonl

Each finished run is appended to ``--record`` at once (a killed run loses nothing), and runs already
recorded there are skipped, so the same command resumes. One process, one thread.
"""

import argparse
import hashlib
import itertools
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from common import parse_settings  # noqa: E402  (benchmarks/, the script's own folder)

PARITY_DIR = os.path.join(HERE, "rlmrec_parity")
PATCH = os.path.join(PARITY_DIR, "rlmrec-cpu.patch")
PROTOCOL = os.path.join(PARITY_DIR, "protocol.yaml")
RECIPES = os.path.join(ROOT, "properties", "rlmrec", "amazon-book")
RLMREC_COMMIT = "2241375"

SPLIT_RATIOS = {"dense": (0.8, 0.1, 0.1), "sparse": (0.15, 0.1, 0.75)}
PARTS = ("train", "valid", "test")
MATRIX_FILES = {"train": "trn_mat.pkl", "valid": "val_mat.pkl", "test": "tst_mat.pkl"}
VECTOR_FILES = {"user": "usr_emb_np.pkl", "item": "itm_emb_np.pkl"}
MAPPER_FILES = {"user": ("ml100k_user.json", "uid", "user_id"), "item": ("ml100k_item.json", "iid", "item_id")}
VARIANTS = ("base", "con", "gen")
BACKBONES = {"lightgcn": "LightGCN", "sgl": "SGL"}  # the original's model name: the plugin's


def original_model(backbone, variant):
    return backbone + {"base": "", "con": "_plus", "gen": "_gene"}[variant]


def plugin_run(backbone, variant):
    r"""The plugin's model and its recipe file for ``variant`` of ``backbone``."""
    model = BACKBONES[backbone]
    if variant == "base":
        return model, f"{model}.yaml"
    return f"{model}_RLM", f"{model}_RLM-{variant}.yaml"

EVAL_USERS_PER_BATCH = 1024  # RLMRec's test batch_size


# -- the split ----------------------------------------------------------------------------------


def ml100k_dir():
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def read_pairs(inter_path):
    r"""(user token, item token) pairs of a RecBole .inter file, in file order, duplicates dropped."""
    with open(inter_path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        columns = [c.partition(":")[0] for c in header]
        u, i = columns.index("user_id"), columns.index("item_id")
        seen, pairs = set(), []
        for line in f:
            row = line.rstrip("\n").split("\t")
            pair = (row[u], row[i])
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs


def split_pairs(pairs, ratios, seed):
    r"""Per user at random: ``{"train"|"valid"|"test": sorted pairs}``. Each user's items are shuffled
    by ``seed``; train and valid take round(n * ratio) of them (at least one each), test the rest
    (at least one). Users are visited in sorted order, so the split depends on the pairs and the seed only."""
    by_user = {}
    for user, item in pairs:
        by_user.setdefault(user, []).append(item)
    rng = np.random.default_rng(seed)
    split = {part: [] for part in PARTS}
    for user in sorted(by_user, key=id_sort_key):
        items = sorted(by_user[user], key=id_sort_key)
        if len(items) < 3:
            raise ValueError(f"user {user} has {len(items)} interactions; a train/valid/test split needs 3")
        items = [items[k] for k in rng.permutation(len(items))]
        n_train = min(max(1, round(len(items) * ratios[0])), len(items) - 2)
        n_valid = min(max(1, round(len(items) * ratios[1])), len(items) - n_train - 1)
        cuts = {"train": items[:n_train], "valid": items[n_train:n_train + n_valid], "test": items[n_train + n_valid:]}
        for part in PARTS:
            split[part] += [(user, item) for item in cuts[part]]
    return split


def id_sort_key(token):
    return (0, int(token), "") if token.isdigit() else (1, 0, token)


def id_order(split):
    r"""RLMRec's row/column order: ``{"user"|"item": sorted raw tokens}`` over all three parts."""
    pairs = [p for part in PARTS for p in split[part]]
    return {
        "user": sorted({u for u, _ in pairs}, key=id_sort_key),
        "item": sorted({i for _, i in pairs}, key=id_sort_key),
    }


def write_split(split, name, data_path, rlmrec_dir, side_files=()):
    r"""Write ``split`` as RecBole benchmark files ``data_path/name/name.<part>.inter`` (plus copies of
    ``side_files``, e.g. ml-100k's .item and .user, renamed to ``name``) and as RLMRec's folder
    ``rlmrec_dir`` (matrices and id mappers). Returns the id order of the matrices."""
    order = id_order(split)
    index = {kind: {token: k for k, token in enumerate(order[kind])} for kind in order}
    dataset_dir = os.path.join(data_path, name)
    os.makedirs(dataset_dir, exist_ok=True)
    os.makedirs(rlmrec_dir, exist_ok=True)
    shape = (len(order["user"]), len(order["item"]))
    for part in PARTS:
        with open(os.path.join(dataset_dir, f"{name}.{part}.inter"), "w", encoding="utf-8") as f:
            f.write("user_id:token\titem_id:token\n")
            f.writelines(f"{u}\t{i}\n" for u, i in split[part])
        rows = np.array([index["user"][u] for u, _ in split[part]], dtype=np.int64)
        cols = np.array([index["item"][i] for _, i in split[part]], dtype=np.int64)
        matrix = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
        with open(os.path.join(rlmrec_dir, MATRIX_FILES[part]), "wb") as f:
            pickle.dump(matrix, f)
    for kind, (filename, key, field) in MAPPER_FILES.items():
        with open(os.path.join(rlmrec_dir, filename), "w", encoding="utf-8") as f:
            f.writelines(json.dumps({key: k, field: token}) + "\n" for k, token in enumerate(order[kind]))
    for path in side_files:
        suffix = os.path.basename(path).rsplit(".", 1)[1]
        shutil.copyfile(path, os.path.join(dataset_dir, f"{name}.{suffix}"))
    return order


# -- profile vectors ----------------------------------------------------------------------------


def export_vectors(store_dir, order, rlmrec_dir):
    r"""Write the store's vectors as RLMRec's ``usr_emb_np.pkl`` / ``itm_emb_np.pkl``: row k = the
    vector of ``order[kind][k]``; every id must have one. Returns ``{kind: array}``."""
    from recbole_llm.profiles.store import ProfileStore

    store = ProfileStore(store_dir)
    exported = {}
    for kind in ("user", "item"):
        ids, vectors, _ = store.read_vectors(kind)
        row = {token: r for r, token in enumerate(ids)}
        missing = [t for t in order[kind] if t not in row]
        if missing:
            raise ValueError(f"{store_dir}: {len(missing)} {kind}s of the split have no vector (e.g. {missing[:5]})")
        table = vectors[[row[t] for t in order[kind]]]
        for k, token in enumerate(order[kind]):  # the order RLMRec reads: row k is index k's vector
            assert np.array_equal(table[k], vectors[row[token]]), (kind, k, token)
        with open(os.path.join(rlmrec_dir, VECTOR_FILES[kind]), "wb") as f:
            pickle.dump(table, f)
        exported[kind] = table
    return exported


def build_profiles(name, data_path, store_dir):
    r"""The split's profile store, built once through the plugin as a run builds it (template
    profiles, the default embedder); returns its directory."""
    from recbole.data import create_dataset, data_preparation

    from recbole_llm.build import ensure_profiles

    config = plugin_config("LightGCN_RLM", os.path.join(RECIPES, "LightGCN_RLM-con.yaml"), name, data_path, store_dir, 2020, {})
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    ensure_profiles(config, train_data._dataset)
    return store_dir


def prepare_split(kind, split_seed, work):
    r"""Write split ``kind`` and its vectors under ``work`` (once; later calls reuse them)."""
    name = f"ml100k-{kind}-{split_seed}"
    data_path = os.path.join(work, "data")
    rlmrec_dir = os.path.join(work, "rlmrec-data", name)
    store_dir = os.path.join(work, "profiles", name)
    done = os.path.join(rlmrec_dir, "READY")
    if not os.path.isfile(done):
        source = ml100k_dir()
        split = split_pairs(read_pairs(os.path.join(source, "ml-100k.inter")), SPLIT_RATIOS[kind], split_seed)
        order = write_split(split, name, data_path, rlmrec_dir,
                            [os.path.join(source, "ml-100k.item"), os.path.join(source, "ml-100k.user")])
        build_profiles(name, data_path, store_dir)
        export_vectors(store_dir, order, rlmrec_dir)
        with open(done, "w") as f:
            f.write(json.dumps({p: len(split[p]) for p in PARTS}) + "\n")
    return {"name": name, "data_path": data_path, "rlmrec_dir": rlmrec_dir, "store_dir": store_dir}


# -- the original -------------------------------------------------------------------------------


def prepare_original(rlmrec_dir, work):
    r"""A patched copy of ``rlmrec_dir``'s ``encoder/`` under ``work`` (the checkout is not touched),
    made again when the patch file changed."""
    copy = os.path.join(work, f"rlmrec-{RLMREC_COMMIT}-cpu")
    marker = os.path.join(copy, "PATCHED")
    with open(PATCH, "rb") as f:
        patch_sha = hashlib.sha256(f.read()).hexdigest()
    if os.path.isfile(marker):
        with open(marker) as f:
            if f.read() == patch_sha:
                return copy
    if not os.path.isfile(os.path.join(rlmrec_dir, "encoder", "train_encoder.py")):
        raise SystemExit(f"--rlmrec-dir {rlmrec_dir}: no encoder/train_encoder.py; clone HKUDS/RLMRec and check out {RLMREC_COMMIT}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(os.path.join(rlmrec_dir, "encoder"), os.path.join(copy, "encoder"),
                    ignore=shutil.ignore_patterns("log", "checkpoint", "__pycache__"))
    subprocess.run(["git", "apply", PATCH], cwd=copy, check=True)
    with open(marker, "w") as f:
        f.write(patch_sha)
    return copy


FLOAT = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
RESULT_LINE = re.compile(r"^\[recall@5: .*\] \[ndcg@5: .*\]\s*$")
VALID_LINE = re.compile(r"^Epoch\s+(\d+) Validation set ")
BEST_LINE = re.compile(r"^Best Epoch (\d+)\. Final test result")


def parse_original_log(text):
    r"""From the original trainer's console output: the test metrics of its best-valid state (the
    last metric line, printed by ``Trainer.test``), the valid metrics of that state (the line before),
    the best epoch (0-based) and the epochs trained (last validated epoch + 1)."""
    lines = text.splitlines()
    results = [line for line in lines if RESULT_LINE.match(line)]
    best = [BEST_LINE.match(line) for line in lines if BEST_LINE.match(line)]
    validated = [int(VALID_LINE.match(line).group(1)) for line in lines if VALID_LINE.match(line)]
    if len(results) < 2 or not best or not validated:
        tail = "\n".join(lines[-5:])
        raise ValueError(f"no final test result in the original's output (last lines:\n{tail})")

    def metrics(line):
        return {f"{m}@{k}": float(v) for m, k, v in re.findall(r"(recall|ndcg)@(\d+): " + FLOAT, line)}

    return {"test": metrics(results[-1]), "valid": metrics(results[-2]),
            "best_epoch": int(best[-1].group(1)), "epochs": validated[-1] + 1}


def run_original(copy, split, backbone, variant, seed, log_dir):
    model = original_model(backbone, variant)
    command = [sys.executable, "encoder/train_encoder.py", "--model", model, "--dataset", "amazon", "--device", "cpu",
               "--seed", str(seed), "--data_dir", os.path.abspath(split["rlmrec_dir"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    log_path = os.path.join(log_dir, f"original-{split['name']}-{model}-{seed}.log")
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if done.returncode:
        raise RuntimeError(f"the original {model} failed (exit {done.returncode}); see {log_path}:\n{text[-2000:]}")
    parsed = parse_original_log(text)
    return parsed["test"], parsed["valid"], parsed["epochs"]


# -- the plugin ---------------------------------------------------------------------------------


def plugin_config(model, recipe, name, data_path, store_dir, seed, extra, checkpoint_dir=None):
    from recbole_llm import Config

    n_items = sum(1 for _ in open(os.path.join(ml100k_dir(), "ml-100k.item"), encoding="utf-8")) - 1
    config_dict = {
        "data_path": data_path,
        "profile_dir": store_dir,
        "seed": seed,
        "eval_batch_size": EVAL_USERS_PER_BATCH * (n_items + 1),
        "show_progress": False,
        "state": "WARNING",
        "save_dataset": False,
        "checkpoint_dir": checkpoint_dir or tempfile.mkdtemp(prefix="rlmrec_parity_"),
        **extra,
    }
    return Config(model=model, dataset=name, config_file_list=[PROTOCOL, recipe], config_dict=config_dict, command_line=False)


def run_plugin(split, backbone, variant, seed, extra):
    from ml100k import train_and_test

    model, recipe = plugin_run(backbone, variant)
    checkpoint_dir = tempfile.mkdtemp(prefix="rlmrec_parity_")
    config = plugin_config(model, os.path.join(RECIPES, recipe), split["name"], split["data_path"], split["store_dir"],
                           seed, extra, checkpoint_dir)
    try:
        test, valid, epoch_seconds = train_and_test(config)
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {k: float(v) for k, v in test.items()}, {k: float(v) for k, v in valid.items()}, len(epoch_seconds)


# -- records and the table ----------------------------------------------------------------------


def side_label(side, plugin_set):
    if side == "plugin" and plugin_set:
        return "plugin[" + " ".join(plugin_set) + "]"
    return side


def read_records(paths):
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def run_key(record):
    return record["split"], record.get("backbone", "lightgcn"), record["side"], record["variant"], record["seed"]


def _mean_std(values):
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def format_table(records):
    r"""One markdown table: per split, backbone and side, each variant's test Recall@20 and NDCG@20
    (mean ± std over seeds, and per seed), epochs per seed, and the gain of the means over the side's
    own base. Records without a backbone are LightGCN's (the harness's first runs)."""
    lines = [
        "| split | backbone | side | variant | seeds | test Recall@20 | gain | test NDCG@20 | gain | Recall@20 per seed | epochs per seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {}
    for record in records:
        group = (record["split"], BACKBONES[record.get("backbone", "lightgcn")], record["side"])
        groups.setdefault(group, {}).setdefault(record["variant"], {})[record["seed"]] = record
    for (split, backbone, side), variants in groups.items():
        base = variants.get("base", {})
        for variant in VARIANTS:
            runs = variants.get(variant)
            if not runs:
                continue
            seeds = sorted(runs)
            row = [split, backbone, side, variant, " ".join(map(str, seeds))]
            for metric in ("recall@20", "ndcg@20"):
                values = [runs[s]["test"][metric] for s in seeds]
                row.append(_mean_std(values))
                base_values = [base[s]["test"][metric] for s in seeds if s in base]
                if variant == "base" or not base_values:
                    row.append("")
                else:
                    row.append(f"{100 * (statistics.mean(values) / statistics.mean(base_values) - 1):+.1f}%")
            row.append(" ".join(f"{runs[s]['test']['recall@20']:.4f}" for s in seeds))
            row.append(" ".join(str(runs[s]["epochs"]) for s in seeds))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def shown(record, args):
    r"""Whether ``--table`` shows ``record``: each of ``--splits``, ``--backbones``, ``--sides`` (the
    plugin side as labelled by ``--plugin-set``) that was given narrows the table."""
    kind = record["split"].split("-")[1]
    if args.splits and kind not in args.splits:
        return False
    if args.backbones and record.get("backbone", "lightgcn") not in args.backbones:
        return False
    return not args.sides or record["side"] in {side_label(side, args.plugin_set) for side in args.sides}


# -- main ---------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rlmrec-dir", help=f"a checkout of HKUDS/RLMRec at {RLMREC_COMMIT} (needed for --sides original)")
    parser.add_argument("--work", default="rlmrec-parity-work", help="split files, stores, patched copy, logs (default: %(default)s)")
    parser.add_argument("--backbones", nargs="+", choices=sorted(BACKBONES), help="default: lightgcn (with --table: all)")
    parser.add_argument("--splits", nargs="+", choices=sorted(SPLIT_RATIOS), help="default: dense sparse (with --table: all)")
    parser.add_argument("--split-seed", type=int, default=2020, help="seed of the per-user random split (default %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022], help="training seeds")
    parser.add_argument("--sides", nargs="+", choices=["original", "plugin"],
                        help="default: original plugin (with --table: all; plugin means the --plugin-set label)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--plugin-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config keys for every plugin run")
    parser.add_argument("--record", help="append each run to this JSON-lines file (runs already in it are skipped)")
    parser.add_argument("--table", nargs="+", metavar="FILE",
                        help="print the table of recorded runs (those of --splits, --backbones, --sides if given), train nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(format_table([r for r in read_records(args.table) if shown(r, args)]))
        return 0
    args.backbones, args.splits = args.backbones or ["lightgcn"], args.splits or ["dense", "sparse"]
    args.sides = args.sides or ["original", "plugin"]
    if "original" in args.sides and not args.rlmrec_dir:
        parser.error("--sides original needs --rlmrec-dir (a checkout of HKUDS/RLMRec at commit 2241375)")

    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    extra = parse_settings(args.plugin_set)
    work = os.path.abspath(args.work)
    log_dir = os.path.join(work, "logs")
    os.makedirs(log_dir, exist_ok=True)
    done = {run_key(r) for r in read_records([args.record])} if args.record and os.path.isfile(args.record) else set()
    copy = prepare_original(args.rlmrec_dir, work) if "original" in args.sides else None
    records = []
    for seed in args.seeds:  # every split and side of one seed before the next seed: the early rows are complete
        for kind in args.splits:
            split = prepare_split(kind, args.split_seed, work)
            for backbone, side, variant in itertools.product(args.backbones, args.sides, args.variants):
                label = side_label(side, args.plugin_set)
                if (split["name"], backbone, label, variant, seed) in done:
                    continue
                start = time.perf_counter()
                if side == "original":
                    test, valid, epochs = run_original(copy, split, backbone, variant, seed, log_dir)
                else:
                    test, valid, epochs = run_plugin(split, backbone, variant, seed, extra)
                record = {"split": split["name"], "backbone": backbone, "side": label, "variant": variant, "seed": seed,
                          "test": test, "valid": valid, "epochs": epochs,
                          "seconds": round(time.perf_counter() - start, 1), "plugin_set": extra if side == "plugin" else {}}
                records.append(record)
                print(f"{split['name']} {backbone} {label} {variant} seed {seed}: test recall@20 {test['recall@20']:.4f} "
                      f"ndcg@20 {test['ndcg@20']:.4f}, {epochs} epochs, {record['seconds']} s", flush=True)
                if args.record:
                    with open(args.record, "a", encoding="utf-8") as f:
                        f.write(json.dumps(record) + "\n")
    print(format_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
