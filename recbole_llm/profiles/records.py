r"""The facts a profile is written from, taken from one dataset exactly as RecBole loaded and split it.

An *item record* holds the item's text fields from the dataset's ``.item`` file (title, year,
categories, other attributes). A *user record* holds the user's features from the ``.user`` file and
the user's TRAINING interactions only (the split RecBole built for this run), so no profile can
leak a validation or test item. :func:`split_fingerprint` identifies that split.
"""

import hashlib
import os
from collections import Counter

import numpy as np
import pandas as pd

TITLE_HINTS = ("title", "name")
YEAR_HINTS = ("year", "date")
CATEGORY_HINTS = ("class", "genre", "categor", "tag")
USER_FEATURES = ("age", "gender", "occupation")
MAX_CATEGORIES = 5


def read_atomic_file(config, suffix, id_field):
    r"""Rows of ``<data_path>/<dataset>.<suffix>`` keyed by raw id token; ``{}`` if there is none.

    Read independently of ``load_col`` (a model need not load the text it is profiled from), with
    RecBole's own header format ``name:type`` and separators.
    """
    path = os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")
    if not os.path.isfile(path):
        return {}, {}
    sep, seq_sep = config["field_separator"], config["seq_separator"]
    with open(path, encoding=config["encoding"]) as f:
        header = f.readline().rstrip("\n").split(sep)
    fields, types = [], {}
    for column in header:
        name, _, ftype = column.partition(":")
        if not ftype:
            raise ValueError(f"{path}: header column {column!r} has no type; RecBole expects name:type (e.g. title:token_seq)")
        fields.append(name)
        types[name] = ftype
    if id_field not in types:
        raise ValueError(f"{path}: no {id_field!r} column (the dataset's id field); columns are {fields}")
    df = pd.read_csv(path, sep=sep, dtype=str, encoding=config["encoding"], engine="python", keep_default_na=False)
    df.columns = fields
    id_pos = fields.index(id_field)
    rows = {}
    for row in df.itertuples(index=False):
        values = {}
        for name, value in zip(fields, row):
            if name == id_field or value == "":
                continue
            values[name] = [v for v in value.split(seq_sep) if v] if types[name].endswith("seq") else value
        rows[row[id_pos]] = values
    return rows, types


def _pick(fields, hints):
    return next((f for f in fields if any(h in f.lower() for h in hints)), None)


def _text(value):
    return " ".join(value) if isinstance(value, list) else str(value)


def item_records(config, dataset):
    r"""One record per item of the dataset (padding excluded): title, year, categories, attributes."""
    iid_field = dataset.iid_field
    rows, types = read_atomic_file(config, "item", iid_field)
    fields = [f for f in types if f != iid_field]
    title_field = config["profile_title_field"] or _pick(fields, TITLE_HINTS)
    year_field = _pick([f for f in fields if f != title_field], YEAR_HINTS)
    category_fields = config["profile_category_fields"] or [
        f for f in fields if f != title_field and types[f] == "token_seq" and any(h in f.lower() for h in CATEGORY_HINTS)
    ]
    if isinstance(category_fields, str):
        category_fields = [category_fields]
    for field in [title_field, *category_fields]:
        if field is not None and field not in types and rows:
            raise ValueError(f"profile field {field!r} is not a column of the {config['dataset']}.item file; columns are {fields}")
    records = {}
    for token in dataset.field2id_token[iid_field][1:]:
        row = rows.get(token, {})
        record = {"id": token}
        if title_field in row:
            record["title"] = _text(row[title_field])
        if year_field in row:
            record["year"] = _text(row[year_field])
        categories = [c for f in category_fields for c in (row.get(f) or [])]
        if categories:
            record["categories"] = categories
        skip = {title_field, year_field, *category_fields}
        attributes = {f: _text(v) for f, v in row.items() if f not in skip}
        if attributes:
            record["attributes"] = attributes
        records[token] = record
    return records


def _train_interactions(config, train_dataset):
    r"""The training split as a DataFrame of internal ids, with rating/time where the dataset has them."""
    feat = train_dataset.inter_feat
    columns = {"user": feat[train_dataset.uid_field].numpy(), "item": feat[train_dataset.iid_field].numpy()}
    for key, field in (("rating", config["RATING_FIELD"]), ("time", config["TIME_FIELD"])):
        if field is not None and field in feat.interaction:
            columns[key] = feat[field].numpy()
    return pd.DataFrame(columns)


def user_records(config, train_dataset, items):
    r"""One record per user (padding excluded) from the user's TRAINING interactions only.

    ``items`` lists up to ``profile_max_items`` training items, best-rated then most recent first;
    ``categories`` are the most frequent categories over all the user's training items.
    """
    uid_field, iid_field = train_dataset.uid_field, train_dataset.iid_field
    rows, types = read_atomic_file(config, "user", uid_field)
    feature_fields = config["profile_user_fields"] or [f for f in USER_FEATURES if f in types]
    item_tokens = train_dataset.field2id_token[iid_field]
    inter = _train_interactions(config, train_dataset)
    sort_keys = [k for k in ("rating", "time") if k in inter.columns]
    if sort_keys:
        inter = inter.sort_values(sort_keys, ascending=False, kind="stable")
    by_user = {u: g["item"].to_numpy() for u, g in inter.groupby("user", sort=False)}
    max_items = config["profile_max_items"]
    records = {}
    for uid, token in enumerate(train_dataset.field2id_token[uid_field]):
        if uid == 0:
            continue
        train_items = [item_tokens[i] for i in by_user.get(uid, np.empty(0, dtype=np.int64))]
        row = rows.get(token, {})
        record = {"id": token, "n_train_items": len(train_items)}
        features = {f: _text(row[f]) for f in feature_fields if f in row}
        if features:
            record["features"] = features
        record["items"] = [_item_summary(items[t]) for t in train_items[:max_items]]
        counts = Counter(c for t in train_items for c in items[t].get("categories", ()))
        if counts:
            record["categories"] = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]]
        records[token] = record
    return records


def _item_summary(item):
    return {k: item[k] for k in ("id", "title", "year") if k in item}


def split_fingerprint(train_dataset):
    r"""sha256 of the sorted (user token, item token) pairs of the training split."""
    feat = train_dataset.inter_feat
    users = train_dataset.field2id_token[train_dataset.uid_field][feat[train_dataset.uid_field].numpy()]
    items = train_dataset.field2id_token[train_dataset.iid_field][feat[train_dataset.iid_field].numpy()]
    pairs = sorted(f"{u}\t{i}" for u, i in zip(users.tolist(), items.tolist()))
    return hashlib.sha256("\n".join(pairs).encode("utf-8")).hexdigest()
