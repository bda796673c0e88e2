r"""The facts a profile is written from, taken from one dataset exactly as RecBole loaded and split it.

An *item record* holds the item's text fields from the dataset's ``.item`` file (title, year,
categories, other attributes) and, when the ``.inter`` file has a review field, a few reviews from
TRAINING interactions. A *user record* holds the user's features from the ``.user`` file and the
user's TRAINING interactions only (the split RecBole built for this run), each with the user's
review where there is one, so no profile can leak a validation or test item.
:func:`split_fingerprint` identifies that split.
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
REVIEW_HINTS = ("review", "text", "comment")
MAX_CATEGORIES = 5


def read_atomic_file(settings, suffix, id_field):
    r"""Rows of ``<data_path>/<dataset>.<suffix>`` keyed by raw id token; ``{}`` if there is none.

    Read independently of ``load_col`` (a model need not load the text it is profiled from), with
    RecBole's own header format ``name:type`` and separators.
    """
    path = os.path.join(settings.data_path, f"{settings.dataset}.{suffix}")
    if not os.path.isfile(path):
        return {}, {}
    sep, seq_sep = settings.field_separator, settings.seq_separator
    with open(path, encoding=settings.encoding) as f:
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
    df = _read_table(path, sep, settings.encoding)
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


def _read_header(path, settings):
    with open(path, encoding=settings.encoding) as f:
        header = f.readline().rstrip("\n").split(settings.field_separator)
    return [c.partition(":")[0] for c in header], {c.partition(":")[0]: c.partition(":")[2] for c in header}


def _read_table(path, sep, encoding, usecols=None):
    # The C parser is much faster on large .inter files; it takes single-character separators only.
    engine = "c" if len(sep) == 1 else "python"
    return pd.read_csv(path, sep=sep, dtype=str, encoding=encoding, engine=engine, keep_default_na=False, usecols=usecols)


def _pick(fields, hints):
    return next((f for f in fields if any(h in f.lower() for h in hints)), None)


def _text(value):
    return " ".join(value) if isinstance(value, list) else str(value)


def item_records(settings, dataset):
    r"""One record per item of the dataset (padding excluded): title, year, categories, attributes,
    and up to ``profile_max_reviews`` training reviews (most recent first) where the dataset has them."""
    iid_field = dataset.iid_field
    rows, types = read_atomic_file(settings, "item", iid_field)
    fields = [f for f in types if f != iid_field]
    title_field = settings.profile_title_field or _pick(fields, TITLE_HINTS)
    year_field = _pick([f for f in fields if f != title_field], YEAR_HINTS)
    category_fields = settings.profile_category_fields or [
        f for f in fields if f != title_field and types[f] == "token_seq" and any(h in f.lower() for h in CATEGORY_HINTS)
    ]
    for field in [title_field, *category_fields]:
        if field is not None and field not in types and rows:
            raise ValueError(f"profile field {field!r} is not a column of the {settings.dataset}.item file; columns are {fields}")
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
    max_reviews = settings.profile_max_reviews
    if max_reviews:
        for (_, item), review in training_reviews(settings, dataset).items():
            reviews = records[item].setdefault("reviews", [])
            if len(reviews) < max_reviews:
                reviews.append(review)
    return records


def describe_text_fields(settings):
    r"""Where the profile writer looks for text, and the keys that choose it (for error messages)."""
    item = os.path.join(settings.data_path, f"{settings.dataset}.item")
    user = os.path.join(settings.data_path, f"{settings.dataset}.user")
    return (
        f"it looked in {item}{'' if os.path.isfile(item) else ' (no such file)'} for a title (a column named like "
        f"{'/'.join(TITLE_HINTS)}, or the key profile_title_field), categories (token_seq columns named like "
        f"{'/'.join(CATEGORY_HINTS)}, or profile_category_fields) and any other attribute column; in the .inter file for "
        f"reviews (a column named like {'/'.join(REVIEW_HINTS)}, or profile_review_field); and in "
        f"{user}{'' if os.path.isfile(user) else ' (no such file)'} for user features ({'/'.join(USER_FEATURES)}, or "
        "profile_user_fields), and found none"
    )


def _inter_files(settings):
    parts = settings.benchmark_filename
    names = [f"{settings.dataset}.{p}.inter" for p in parts] if parts else [f"{settings.dataset}.inter"]
    return [os.path.join(settings.data_path, n) for n in names]


def training_reviews(settings, train_dataset):
    r"""``{(user token, item token): review}`` of the TRAINING interactions that have a review, most
    recent first; ``{}`` if the ``.inter`` file has no review field (``profile_review_field``, or the
    first text field named like *review*, *text* or *comment*)."""
    uid_field, iid_field = train_dataset.uid_field, train_dataset.iid_field
    paths = [p for p in _inter_files(settings) if os.path.isfile(p)]
    if not paths:
        return {}
    fields, types = _read_header(paths[0], settings)
    text_fields = [f for f in fields if f not in (uid_field, iid_field) and types[f] in ("token", "token_seq")]
    review_field = settings.profile_review_field or _pick(text_fields, REVIEW_HINTS)
    if review_field is None:
        return {}
    if review_field not in fields:
        raise ValueError(f"profile_review_field {review_field!r} is not a column of {paths[0]}; columns are {fields}")
    time_field = settings.TIME_FIELD if settings.TIME_FIELD in fields else None
    columns = [uid_field, iid_field, review_field] + ([time_field] if time_field else [])
    frames = []
    for path in paths:
        names = _read_header(path, settings)[0]
        frame = _read_table(path, settings.field_separator, settings.encoding, usecols=[names.index(c) for c in columns])
        frame.columns = [names[i] for i in sorted(names.index(c) for c in columns)]
        frames.append(frame[columns])
    inter = pd.concat(frames, ignore_index=True)
    if time_field:
        inter = inter.assign(_t=pd.to_numeric(inter[time_field], errors="coerce")).sort_values("_t", ascending=False, kind="stable")
    train_pairs = set(_pairs(train_dataset))
    seq_sep = settings.seq_separator
    reviews = {}
    for user, item, text in zip(inter[uid_field], inter[iid_field], inter[review_field]):
        text = " ".join(text.split(seq_sep)) if types[review_field] == "token_seq" else text
        if text.strip() and (user, item) in train_pairs and (user, item) not in reviews:
            reviews[(user, item)] = text.strip()
    return reviews


def _training_columns(train_dataset, fields):
    r"""``{field: numpy array}``: the training interactions' values of ``fields`` (those it has).

    A sequential dataset (RecBole's ``SequentialDataset``) holds one row per prefix ``<i1..ik> | i(k+1)``
    of a user's training sequence: its item field holds the targets i2, i3 ..., never the first
    item i1, which only the length-1 rows' item lists hold. It is added from there, as RecBole's
    ``SequentialDataset.inter_matrix`` does, so that the training split is every item before the
    user's validation and test items, and nothing after.
    """
    feat = train_dataset.inter_feat.interaction
    fields = [f for f in fields if f is not None and f in feat]
    columns = {f: feat[f].numpy() for f in fields}
    length_field = getattr(train_dataset, "item_list_length_field", None)
    if length_field in feat and getattr(train_dataset, "item_id_list_field", None) in feat:
        first = (feat[length_field] == 1).numpy()
        for f in fields:
            # SequentialDataset names each field's list field (`<field>_list_field`); the user has none.
            listed = getattr(train_dataset, f"{f}_list_field", None)
            head = feat[listed][first][:, 0].numpy() if listed in feat else feat[f][first].numpy()
            columns[f] = np.concatenate([columns[f], head])
    return columns


def _pairs(train_dataset):
    uid_field, iid_field = train_dataset.uid_field, train_dataset.iid_field
    columns = _training_columns(train_dataset, [uid_field, iid_field])
    users = train_dataset.field2id_token[uid_field][columns[uid_field]]
    items = train_dataset.field2id_token[iid_field][columns[iid_field]]
    return zip(users.tolist(), items.tolist())


def _train_interactions(settings, train_dataset):
    r"""The training split as a DataFrame of internal ids, with rating/time where the dataset has them."""
    uid_field, iid_field = train_dataset.uid_field, train_dataset.iid_field
    fields = {"user": uid_field, "item": iid_field, "rating": settings.RATING_FIELD, "time": settings.TIME_FIELD}
    columns = _training_columns(train_dataset, list(fields.values()))
    return pd.DataFrame({key: columns[field] for key, field in fields.items() if field in columns})


def user_records(settings, train_dataset, items):
    r"""One record per user (padding excluded) from the user's TRAINING interactions only.

    ``items`` lists up to ``profile_max_items`` training items, best-rated then most recent first,
    each with the user's review of it where there is one; ``categories`` are the most frequent
    categories over all the user's training items.
    """
    uid_field, iid_field = train_dataset.uid_field, train_dataset.iid_field
    rows, types = read_atomic_file(settings, "user", uid_field)
    feature_fields = settings.profile_user_fields or [f for f in USER_FEATURES if f in types]
    item_tokens = train_dataset.field2id_token[iid_field]
    inter = _train_interactions(settings, train_dataset)
    sort_keys = [k for k in ("rating", "time") if k in inter.columns]
    if sort_keys:
        inter = inter.sort_values(sort_keys, ascending=False, kind="stable")
    by_user = {u: g["item"].to_numpy() for u, g in inter.groupby("user", sort=False)}
    max_items = settings.profile_max_items
    reviews = training_reviews(settings, train_dataset)
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
        record["items"] = [_item_summary(items[t], reviews.get((token, t))) for t in train_items[:max_items]]
        counts = Counter(c for t in train_items for c in items[t].get("categories", ()))
        if counts:
            record["categories"] = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]]
        records[token] = record
    return records


def _item_summary(item, review=None):
    summary = {k: item[k] for k in ("id", "title", "year") if k in item}
    if review:
        summary["review"] = review
    return summary


def split_fingerprint(train_dataset):
    r"""sha256 of the sorted (user token, item token) pairs of the training split."""
    pairs = sorted(f"{u}\t{i}" for u, i in _pairs(train_dataset))
    return hashlib.sha256("\n".join(pairs).encode("utf-8")).hexdigest()
