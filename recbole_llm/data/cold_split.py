r"""A cold-start split written as RecBole benchmark files (ColdRec's protocol).

    python -m recbole_llm.data.cold_split --dataset=ml-100k --cold=item --share=0.2 --seed=2020 --out=dataset

holds out ``share`` of the items (``--cold=user``: of the users), drawn with ``seed``, with ALL
their interactions: each held-out node's interactions are split between validation and test
(``--cold_valid_share`` of them, 0.5, to validation). The other (warm) interactions are split per
user into train / valid / test (``--warm_split``, 0.8 0.1 0.1). It writes

    <out>/<name>/<name>.train.inter  .valid.inter  .test.inter   (RecBole benchmark files)
    <out>/<name>/<name>.item  .user                               (copied, when the source has them)
    <out>/<name>/<name>.yaml                                      (the config that reads them)

with ``<name>`` = ``<dataset>-cold-<item|user><percent>-s<seed>`` unless ``--name`` is given.
The same arguments write the same files. Run with the written config:

    python run_recbole_llm.py --model=LightGCN_RLM --dataset=<name> --config_files=<out>/<name>/<name>.yaml --cold_start=knn

The config sets ``neg_sample_cold_items: false`` (:mod:`recbole_llm.data.preparation`), so a
held-out item is never drawn as a training negative: it is not trained at all. Profiles are built
from the training file only (:mod:`recbole_llm.profiles.records`), so no held-out interaction or
review reaches any profile; a held-out item's profile is its metadata alone, a held-out user's its
features alone. Validation and test mix warm and cold positives: every item is ranked among all
items, and the group metrics (``ColdRecall``, ``WarmRecall``, ``HistoryRecall[0]`` ...) separate them.
"""

import argparse
import os
import shutil

import numpy as np
import pandas as pd
import yaml

from recbole_llm.profiles.prompts import preset_for

KINDS = ("item", "user")


def source_dir(dataset, data_path=None):
    r"""The folder with ``<dataset>.inter``: ``<data_path>/<dataset>``; without ``data_path``,
    RecBole's bundled copy for ml-100k, else ``dataset/<dataset>`` (RecBole's default)."""
    if data_path is not None:
        return os.path.join(data_path, dataset)
    if dataset == "ml-100k":
        import recbole

        return os.path.join(os.path.dirname(os.path.abspath(recbole.__file__)), "dataset_example", dataset)
    return os.path.join("dataset", dataset)


def read_inter(path, sep="\t"):
    r"""An atomic ``.inter`` file as strings, with its header columns (``name:type``) kept verbatim."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: give --data_path, the folder that holds <dataset>/<dataset>.inter")
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=3)
    return frame


def _column(frame, field, path):
    for column in frame.columns:
        if column.split(":")[0] == field:
            return column
    raise ValueError(f"{path}: no {field!r} column; columns are {list(frame.columns)}")


def _split_groups(keys, shares, rng):
    r"""Per group of ``keys``: shuffle its rows, give the first ``int(share * n)`` rows of every
    later part, the rest to the first part. Returns the part index of each row."""
    order = rng.permutation(len(keys))
    shuffled = pd.Series(keys[order])
    position = shuffled.groupby(shuffled, sort=False).cumcount().to_numpy()
    size = shuffled.map(shuffled.value_counts()).to_numpy()
    part = np.zeros(len(keys), dtype=np.int64)
    bounds = np.zeros(len(keys), dtype=np.int64)
    for index, share in enumerate(shares[1:], start=1):
        count = (share * size).astype(np.int64)
        part[order[(position >= size - bounds - count) & (position < size - bounds)]] = index
        bounds = bounds + count
    return part


def cold_split(inter, user_column, item_column, kind, share, seed, warm_split=(0.8, 0.1, 0.1), cold_valid_share=0.5):
    r"""Split ``inter`` (a DataFrame of one ``.inter`` file) into (train, valid, test, held-out ids).

    ``share`` of the distinct ``kind`` ids (items or users) are held out, drawn with ``seed``; their
    interactions go to valid (``cold_valid_share`` of each one's) and test; the others are split
    per user by ``warm_split`` (train, valid, test shares)."""
    if kind not in KINDS:
        raise ValueError(f"--cold must be one of {KINDS}, got {kind!r}")
    if not 0 < share < 1:
        raise ValueError(f"--share must be between 0 and 1 (exclusive), got {share}")
    if len(warm_split) != 3 or abs(sum(warm_split) - 1) > 1e-9 or min(warm_split) < 0:
        raise ValueError(f"--warm_split must be three non-negative shares summing to 1, got {warm_split}")
    rng = np.random.default_rng(seed)
    column = item_column if kind == "item" else user_column
    ids = np.array(sorted(inter[column].unique()))
    held_out = set(rng.choice(ids, size=int(round(share * len(ids))), replace=False).tolist())
    cold = inter[column].isin(held_out).to_numpy()
    warm_rows, cold_rows = inter[~cold], inter[cold]
    warm_part = _split_groups(warm_rows[user_column].to_numpy(), list(warm_split), rng)
    cold_part = _split_groups(cold_rows[column].to_numpy(), [1 - cold_valid_share, cold_valid_share], rng)
    train = warm_rows[warm_part == 0]
    valid = pd.concat([warm_rows[warm_part == 1], cold_rows[cold_part == 1]])
    test = pd.concat([warm_rows[warm_part == 2], cold_rows[cold_part == 0]])
    return train, valid, test, held_out


def write_split(dataset, out, kind="item", share=0.2, seed=2020, data_path=None, name=None, warm_split=(0.8, 0.1, 0.1),
                cold_valid_share=0.5, user_field="user_id", item_field="item_id"):
    r"""Write the split's benchmark files, copies of ``.item`` / ``.user`` and its config; return the config path."""
    source = source_dir(dataset, data_path)
    path = os.path.join(source, f"{dataset}.inter")
    inter = read_inter(path)
    user_column, item_column = _column(inter, user_field, path), _column(inter, item_field, path)
    train, valid, test, held_out = cold_split(inter, user_column, item_column, kind, share, seed, warm_split, cold_valid_share)
    name = name or f"{dataset}-cold-{kind}{round(share * 100)}-s{seed}"
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    for part, frame in (("train", train), ("valid", valid), ("test", test)):
        frame.to_csv(os.path.join(folder, f"{name}.{part}.inter"), sep="\t", index=False, quoting=3)
    for suffix in ("item", "user"):
        feature_file = os.path.join(source, f"{dataset}.{suffix}")
        if os.path.isfile(feature_file):
            shutil.copyfile(feature_file, os.path.join(folder, f"{name}.{suffix}"))
    # Ids and numbers load as RecBole features; a long text column (reviews) is read by the profile
    # builder from the files themselves and need not be loaded.
    columns = [c.split(":")[0] for c in inter.columns if c in (user_column, item_column) or c.split(":")[1] == "float"]
    config = {
        "data_path": os.path.abspath(out),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": columns},
        "neg_sample_cold_items": False,
        "llm_prompt_preset": preset_for(dataset),
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
    }
    config_path = os.path.join(folder, f"{name}.yaml")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(f"# Cold-start split of {dataset}: {share:.0%} of the {kind}s held out (seed {seed}), written by\n")
        f.write(f"# python -m recbole_llm.data.cold_split --dataset={dataset} --cold={kind} --share={share} --seed={seed}\n")
        yaml.safe_dump(config, f, sort_keys=False)
    with open(os.path.join(folder, f"{name}.cold_{kind}s.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(held_out)) + "\n")
    return config_path, {"train": len(train), "valid": len(valid), "test": len(test), f"cold_{kind}s": len(held_out)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_llm.data.cold_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default: RecBole's; ml-100k: its bundled copy)")
    parser.add_argument("--out", default="dataset", help="folder the split's own dataset folder is written into")
    parser.add_argument("--cold", choices=KINDS, default="item")
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--name", default=None)
    parser.add_argument("--warm_split", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VALID", "TEST"))
    parser.add_argument("--cold_valid_share", type=float, default=0.5)
    args = parser.parse_args(argv)
    config_path, counts = write_split(
        args.dataset, args.out, args.cold, args.share, args.seed, args.data_path, args.name, tuple(args.warm_split), args.cold_valid_share
    )
    print(f"wrote {os.path.dirname(config_path)}: {counts}; run with --config_files={config_path}")


if __name__ == "__main__":
    main()
