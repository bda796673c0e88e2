r"""Import an RLMRec dataset folder: RecBole benchmark files plus a profile store.

RLMRec (Ren et al., WWW 2024; github.com/HKUDS/RLMRec) ships each dataset as one folder::

    trn_mat.pkl val_mat.pkl tst_mat.pkl   pickled scipy.sparse user x item matrices (nonzero = interaction)
    usr_prf.pkl itm_prf.pkl               optional: dict row/column index -> {"profile": str, "reasoning": str}
    usr_emb_np.pkl itm_emb_np.pkl         optional: float arrays [n_users | n_items, d], row = index
    <name>_user.json <name>_item.json     optional JSON lines {"uid": 0, "reviewerID": "..."} / {"iid": 0, "asin": "..."}

Usage::

    python -m recbole_llm.data.import_rlmrec SRC --name NAME --out DATA_DIR [--profile-dir DIR] [--force]

writes ``DATA_DIR/NAME/NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` (columns
``user_id:token item_id:token``; the split kept exactly; raw ids from the mapper files when present,
else the row/column index) for RecBole's ``benchmark_filename: [train, valid, test]``. When the
folder has profile vectors (or profile texts of both kinds, which are then embedded with
``--embedder``), it also writes a profile store (DESIGN §3) at ``--profile-dir`` (default
``profiles/NAME``, where a run looks by default): vectors as float32, texts kept, manifest ``llm``
``rlmrec-import`` and the split fingerprint of the training split RecBole loads from the written
files, so the dataset hook uses the store as written.

Security: unpickling runs whatever code the file names. The pickles are read with a restricted
unpickler that resolves only the scipy.sparse matrix classes and the numpy array/scalar classes
these files need; any other class or function (``os.system``, ``builtins.eval``, ...) is refused
before it can run, and the loaded objects are then checked for the expected types and shapes.
Import only folders whose origin you know all the same.
"""

import argparse
import codecs
import copyreg
import glob
import json
import logging
import os
import pickle
import sys
import tempfile
import time
import warnings
from logging import getLogger

import numpy as np
import scipy.sparse as sp

SPLITS = (("train", "trn_mat.pkl"), ("valid", "val_mat.pkl"), ("test", "tst_mat.pkl"))
PROFILE_FILES = {"user": "usr_prf.pkl", "item": "itm_prf.pkl"}
VECTOR_FILES = {"user": "usr_emb_np.pkl", "item": "itm_emb_np.pkl"}
MAPPER_KEYS = {"user": "uid", "item": "iid"}
LLM_IDENTITY = "rlmrec-import"
PROFILE_SOURCE = "rlmrec-import"
FIELDS = {"user": "user_id", "item": "item_id"}

# The only globals a pickle may name: exact (module, name) pairs. numpy >= 2 writes numpy._core.
_SPARSE_CLASSES = ("coo_matrix", "csr_matrix", "csc_matrix", "coo_array", "csr_array", "csc_array")
_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}
# Older protocols rebuild objects through copyreg (0/1) and write bytes as _codecs.encode(str,
# "latin1") (0-2); the classes and strings these receive are themselves resolved here.
_PROTOCOL_GLOBALS = {
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("builtins", "object"): object,
    ("_codecs", "encode"): codecs.encode,
}


class RLMRecImportError(ValueError):
    """An input file is missing or malformed; the message names the file and what is wrong."""


class _RestrictedUnpickler(pickle.Unpickler):
    r"""Resolves only scipy.sparse matrices and numpy arrays/scalars; refuses everything else."""

    def find_class(self, module, name):
        if module.split(".")[:2] == ["scipy", "sparse"] and name in _SPARSE_CLASSES:
            return getattr(sp, name)
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in _PROTOCOL_GLOBALS:
            return _PROTOCOL_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(
            f"it names {module}.{name}, which is not a scipy.sparse matrix or numpy array class; "
            "loading it could run arbitrary code, so it was refused"
        )


def load_pickle(path):
    r"""Unpickle ``path`` with :class:`_RestrictedUnpickler`; any failure names the file."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except OSError as e:
        raise RLMRecImportError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception as e:  # a corrupt pickle raises many types (EOFError, KeyError, TypeError, ...)
        raise RLMRecImportError(f"{path}: not a loadable RLMRec pickle ({type(e).__name__}: {e})") from None


# -- interactions -------------------------------------------------------------------------------


def read_matrix(path):
    r"""A pickled scipy.sparse matrix as a validated CSR matrix whose nonzeros are the interactions."""
    matrix = load_pickle(path)
    if not sp.issparse(matrix):
        raise RLMRecImportError(f"{path}: expected a pickled scipy.sparse user x item matrix, found {type(matrix).__name__}")
    try:
        # Rebuilt through the constructors, which check indices against the shape (an unpickled
        # object skipped those checks, and out-of-range indices would corrupt memory in C code).
        if matrix.format == "coo":
            row, col = np.asarray(matrix.row), np.asarray(matrix.col)
            csr = sp.coo_matrix((np.asarray(matrix.data), (row, col)), shape=matrix.shape).tocsr()
        else:
            parts = (np.asarray(matrix.data), np.asarray(matrix.indices), np.asarray(matrix.indptr))
            cls = sp.csr_matrix if matrix.format == "csr" else sp.csc_matrix
            rebuilt = cls(parts, shape=matrix.shape)
            rebuilt.check_format(full_check=True)
            csr = rebuilt.tocsr()
    except Exception as e:
        raise RLMRecImportError(f"{path}: not a valid scipy.sparse matrix ({type(e).__name__}: {e})") from None
    if csr.ndim != 2 or not np.issubdtype(csr.dtype, np.number):
        raise RLMRecImportError(f"{path}: expected a numeric 2-d matrix, found dtype {csr.dtype} shape {csr.shape}")
    if not np.isfinite(csr.data).all():
        raise RLMRecImportError(f"{path}: holds NaN or inf values")
    csr.sum_duplicates()
    csr.eliminate_zeros()  # RLMRec reads (mat != 0): a stored zero is no interaction
    return csr


def read_split(src):
    r"""The three matrices as CSR, keyed by RecBole's benchmark names; all of one shape."""
    split = {}
    for name, filename in SPLITS:
        path = os.path.join(src, filename)
        if not os.path.isfile(path):
            raise RLMRecImportError(f"{path} is missing: an RLMRec folder holds {', '.join(f for _, f in SPLITS)}")
        split[name] = read_matrix(path)
    shape = split["train"].shape
    for name, filename in SPLITS[1:]:
        if split[name].shape != shape:
            raise RLMRecImportError(
                f"{os.path.join(src, filename)}: shape {split[name].shape} differs from trn_mat.pkl's {shape}; "
                "all three matrices must be users x items of the same dataset"
            )
    return split


def matrix_pairs(matrix):
    r"""(row, column) index arrays of the nonzeros, sorted by row then column."""
    coo = matrix.tocoo()
    order = np.lexsort((coo.col, coo.row))
    return coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)


# -- raw ids ------------------------------------------------------------------------------------


def find_mapper(src, kind):
    r"""Path of the ``*_user.json`` / ``*_item.json`` mapper in ``src``, or None."""
    found = sorted(glob.glob(os.path.join(glob.escape(src), f"*_{kind}.json")))
    if len(found) > 1:
        raise RLMRecImportError(f"{src}: several {kind} mapper files {found}; pass the right one with --{kind}-map")
    return found[0] if found else None


def read_mapper(path, kind, n):
    r"""Raw id tokens of indices ``0..n-1`` from JSON lines ``{"uid"|"iid": index, "<field>": raw id}``."""
    key = MAPPER_KEYS[kind]
    tokens = [None] * n
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except ValueError as e:
                raise RLMRecImportError(f"{where}: not JSON ({e})") from None
            others = [k for k in record if k != key] if isinstance(record, dict) else []
            if not isinstance(record, dict) or not isinstance(record.get(key), int) or len(others) != 1:
                raise RLMRecImportError(f'{where}: expected {{"{key}": <int index>, "<raw id field>": <raw id>}}, found {line.strip()[:100]}')
            index, raw = record[key], record[others[0]]
            if not 0 <= index < n:
                raise RLMRecImportError(f"{where}: {key} {index} is outside the matrices' {n} {kind}s")
            if tokens[index] is not None:
                raise RLMRecImportError(f"{where}: {key} {index} is mapped twice")
            tokens[index] = _token(raw, where)
    unmapped = [i for i, t in enumerate(tokens) if t is None]
    if unmapped:
        raise RLMRecImportError(f"{path}: {len(unmapped)} of {n} {kind} indices have no raw id (e.g. {unmapped[:5]})")
    first = {}
    for index, token in enumerate(tokens):
        if first.setdefault(token, index) != index:
            raise RLMRecImportError(f"{path}: raw id {token!r} is given to {key} {first[token]} and {key} {index}; raw ids must be unique")
    return tokens


def _token(raw, where):
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise RLMRecImportError(f"{where}: raw id {raw!r} is not a string or integer")
    token = str(raw)
    # RecBole's atomic files are tab separated, one interaction a line.
    if not token or token != token.strip() or any(c in token for c in "\t\n\r"):
        raise RLMRecImportError(f"{where}: raw id {token!r} is empty or has surrounding whitespace, tabs or newlines")
    return token


def id_tokens(src, kind, n, mapper=None):
    r"""Tokens of the ``n`` indices of ``kind``: from the mapper file when there is one, else ``"0".."n-1"``."""
    mapper = mapper or find_mapper(src, kind)
    if mapper is None:
        return [str(i) for i in range(n)], None
    return read_mapper(mapper, kind, n), mapper


# -- profiles and vectors -----------------------------------------------------------------------


def read_profiles(path, kind, n):
    r"""``{index: (profile, reasoning)}`` from a pickled dict ``index -> {"profile": str, "reasoning": str}``."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise RLMRecImportError(f"{path}: expected a dict {kind} index -> {{'profile': str, 'reasoning': str}}, found {type(data).__name__}")
    profiles = {}
    for key, value in data.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) or not 0 <= key < n:
            raise RLMRecImportError(f"{path}: key {key!r} is not one of the {n} {kind} indices (0..{n - 1})")
        if not isinstance(value, dict) or not isinstance(value.get("profile"), str):
            raise RLMRecImportError(f"{path}: entry {key} is not a dict with a string 'profile' (found {str(value)[:100]!r})")
        reasoning = value.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise RLMRecImportError(f"{path}: entry {key} has a 'reasoning' that is not a string ({type(reasoning).__name__})")
        profiles[int(key)] = (value["profile"], reasoning)
    return profiles


def read_vectors(path, kind, n):
    r"""A pickled float array [n, d] as float32, row = index."""
    vectors = load_pickle(path)
    if not isinstance(vectors, np.ndarray) or not np.issubdtype(vectors.dtype, np.floating):
        found = f"{type(vectors).__name__} of dtype {vectors.dtype}" if isinstance(vectors, np.ndarray) else type(vectors).__name__
        raise RLMRecImportError(f"{path}: expected a float numpy array [{kind}s, dim], found {found}")
    if vectors.ndim != 2 or vectors.shape[0] != n or vectors.shape[1] == 0:
        raise RLMRecImportError(f"{path}: shape {vectors.shape}, expected ({n}, dim): one row per {kind} of the matrices")
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise RLMRecImportError(f"{path}: {len(bad)} rows hold NaN or inf (rows e.g. {bad[:5].tolist()})")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def read_semantics(src, n):
    r"""Profile texts and vectors per kind (None where the file is absent), checked against each other."""
    texts, vectors = {}, {}
    for kind in ("user", "item"):
        path = os.path.join(src, PROFILE_FILES[kind])
        texts[kind] = read_profiles(path, kind, n[kind]) if os.path.isfile(path) else None
        path = os.path.join(src, VECTOR_FILES[kind])
        vectors[kind] = read_vectors(path, kind, n[kind]) if os.path.isfile(path) else None
    present = [k for k in vectors if vectors[k] is not None]
    if len(present) == 1:
        other = "item" if present[0] == "user" else "user"
        raise RLMRecImportError(
            f"{os.path.join(src, VECTOR_FILES[present[0]])} is present but {os.path.join(src, VECTOR_FILES[other])} is missing: "
            "user and item vectors must come from the same embedder (remove the one, or add the other)"
        )
    if present and vectors["user"].shape[1] != vectors["item"].shape[1]:
        raise RLMRecImportError(
            f"{os.path.join(src, VECTOR_FILES['user'])} has dim {vectors['user'].shape[1]} but "
            f"{os.path.join(src, VECTOR_FILES['item'])} has dim {vectors['item'].shape[1]}: both must come from the same embedder"
        )
    return texts, vectors


# -- output -------------------------------------------------------------------------------------


def write_benchmark(dataset_dir, name, split, tokens):
    r"""``NAME.{train,valid,test}.inter``: one ``user token, item token`` row per nonzero."""
    os.makedirs(dataset_dir, exist_ok=True)
    users, items = np.asarray(tokens["user"], dtype=object), np.asarray(tokens["item"], dtype=object)
    for split_name, matrix in split.items():
        rows, cols = matrix_pairs(matrix)
        lines = [f"{FIELDS['user']}:token\t{FIELDS['item']}:token\n"]
        lines += [f"{u}\t{i}\n" for u, i in zip(users[rows], items[cols])]
        path = os.path.join(dataset_dir, f"{name}.{split_name}.inter")
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(f"{path}.tmp", path)


def recbole_split(data_dir, name):
    r"""The (train, valid, test) datasets RecBole loads from the benchmark files, as a run loads them."""
    from recbole.data import create_dataset

    from recbole_llm.config import Config

    config_dict = {
        "data_path": data_dir,
        "benchmark_filename": [s for s, _ in SPLITS],
        "load_col": {"inter": [FIELDS["user"], FIELDS["item"]]},
        "USER_ID_FIELD": FIELDS["user"],
        "ITEM_ID_FIELD": FIELDS["item"],
        "save_dataset": False,
    }
    with tempfile.TemporaryDirectory(prefix="rlmrec-import-") as empty, warnings.catch_warnings():
        # create_dataset reuses a dataset cached in checkpoint_dir: an empty one keeps a stale cache
        # of an earlier import from standing in for the files just written.
        config_dict["checkpoint_dir"] = empty
        warnings.simplefilter("ignore", FutureWarning)  # pandas chained-assignment notices inside RecBole
        # The importer's own options on the command line are not RecBole keys.
        config = Config(model="LightGCN", dataset=name, config_dict=config_dict, command_line=False)
        return create_dataset(config).build()


def token_pairs(dataset):
    r"""Set of (user token, item token) pairs of a RecBole dataset split."""
    feat = dataset.inter_feat
    users = dataset.field2id_token[dataset.uid_field][feat[dataset.uid_field].numpy()]
    items = dataset.field2id_token[dataset.iid_field][feat[dataset.iid_field].numpy()]
    return set(zip(users.tolist(), items.tolist()))


def check_round_trip(datasets, split, tokens, dataset_dir):
    r"""Fail unless RecBole's loaded split holds exactly the source pairs (no filtering, no id mangling)."""
    users, items = np.asarray(tokens["user"], dtype=object), np.asarray(tokens["item"], dtype=object)
    for dataset, (split_name, matrix) in zip(datasets, split.items()):
        rows, cols = matrix_pairs(matrix)
        expected = set(zip(users[rows].tolist(), items[cols].tolist()))
        loaded = token_pairs(dataset)
        if len(dataset.inter_feat) != len(expected) or loaded != expected:
            raise RLMRecImportError(
                f"{dataset_dir}: RecBole loaded {len(dataset.inter_feat)} {split_name} interactions "
                f"({len(loaded - expected)} not in the source, {len(expected - loaded)} missing) instead of the "
                f"{len(expected)} of the source; check the raw ids of the mapper files (pandas reads ids such as "
                "'NA' or 'null' as missing)"
            )


def write_store(store_dir, manifest, kinds):
    r"""A profile store (DESIGN §3) from ``kinds[kind] = (tokens, vectors [n, d], {token: (profile, reasoning)})``."""
    from recbole_llm.profiles.store import ProfileStore, text_sha

    store = ProfileStore(store_dir)
    with store.lock(writer=PROFILE_SOURCE):
        # Cleared only now, with the new store computed: a failure before this point (a bad
        # --embedder, an unreadable file) leaves the old store as it was.
        store.clear()
        for kind, (tokens, vectors, texts) in kinds.items():
            records = {
                token: {"id": token, "profile": profile, "reasoning": reasoning, "source": PROFILE_SOURCE, "prompt_sha": None}
                for token, (profile, reasoning) in texts.items()
            }
            store.rewrite_records(kind, records)
            shas = [text_sha(texts[t][0]) if t in texts else "" for t in tokens]
            store.write_vectors(kind, tokens, vectors, shas, embedder=manifest["embedder"])
        store.write_manifest(manifest)
    return store


def _load_embedder(embedder_name):
    r"""The sentence-transformers embedder, loaded now: a name that is not one fails here, before
    anything is written or removed."""
    from recbole_llm.profiles.embedders import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(embedder_name)
    try:
        embedder.dim
    except Exception as e:  # noqa: BLE001 (sentence-transformers and the hub raise many types)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RLMRecImportError(
            f"--embedder {embedder.name!r}: cannot load this sentence-transformers model ({type(e).__name__}: {first}). "
            "Nothing was written or removed; give a model name or local path that loads, or leave --embedder out "
            "for the bundled all-MiniLM-L6-v2."
        ) from None
    return embedder


def _embed_texts(texts, embedder, logger):
    vectors = {}
    for kind in ("user", "item"):
        logger.info(f"Embedding {len(texts[kind])} {kind} profiles with {embedder.identity}")
        vectors[kind] = embedder.embed([texts[kind][i][0] for i in sorted(texts[kind])], show_progress=True)
    return vectors, embedder.identity


def _store_kinds(texts, vectors, tokens, recbole_tokens):
    r"""Per kind: (tokens, vectors, texts by token) restricted to the ids RecBole's dataset has."""
    kinds = {}
    for kind in ("user", "item"):
        # Rows of ids RecBole's dataset lacks (no interaction in any split) or without a vector
        # (unprofiled ids when texts were embedded here) are left out; the hook maps by token.
        finite = np.isfinite(vectors[kind]).all(axis=1)
        keep = [i for i, t in enumerate(tokens[kind]) if t in recbole_tokens[kind] and finite[i]]
        kind_texts = texts[kind] or {}
        kinds[kind] = (
            [tokens[kind][i] for i in keep],
            vectors[kind][keep],
            {tokens[kind][i]: kind_texts[i] for i in keep if i in kind_texts},
        )
    return kinds


def import_rlmrec(src, name, out, profile_dir=None, embedder=None, force=False, user_map=None, item_map=None):
    r"""Convert the RLMRec folder ``src``; returns a summary dict (paths, counts, fingerprint)."""
    from recbole_llm.profiles.records import split_fingerprint
    from recbole_llm.profiles.store import store_dir as default_store_dir

    logger = getLogger(__name__)
    if not os.path.isdir(src):
        raise RLMRecImportError(f"{src} is not a directory (expected an RLMRec dataset folder)")
    dataset_dir = os.path.join(out, name)
    store_dir = default_store_dir(profile_dir, name)
    _refuse_overwrite(dataset_dir, name, store_dir, force)

    split = read_split(src)
    n = dict(zip(("user", "item"), split["train"].shape))
    tokens, mappers = {}, {}
    for kind, explicit in (("user", user_map), ("item", item_map)):
        tokens[kind], mappers[kind] = id_tokens(src, kind, n[kind], explicit)
    texts, vectors = read_semantics(src, n)
    to_embed = _texts_to_embed(src, texts, vectors)
    embedder = _load_embedder(embedder) if to_embed else None

    write_benchmark(dataset_dir, name, split, tokens)
    datasets = recbole_split(out, name)
    check_round_trip(datasets, split, tokens, dataset_dir)
    train = datasets[0]
    summary = {
        "dataset_dir": dataset_dir,
        "users": len(train.field2id_token[train.uid_field]) - 1,
        "items": len(train.field2id_token[train.iid_field]) - 1,
        "interactions": {s: len(d.inter_feat) for s, d in zip(split, datasets)},
        "mappers": mappers,
        "split_fingerprint": split_fingerprint(train),
        "profile_dir": None,
    }

    embedder_identity = f"{LLM_IDENTITY}:{os.path.abspath(src)}"
    if to_embed:
        for kind in ("user", "item"):
            if len(texts[kind]) != n[kind]:
                logger.warning(f"{PROFILE_FILES[kind]}: {n[kind] - len(texts[kind])} of {n[kind]} {kind}s have no profile")
        embedded, embedder_identity = _embed_texts(texts, embedder, logger)
        vectors = _expand_embedded(embedded, texts, n)
    elif vectors["user"] is None:
        logger.info(f"{src} has no profiles or vectors: no profile store written")
        if force:  # everything that can fail has run: the old store, for the old data, goes
            from recbole_llm.profiles.store import ProfileStore

            with ProfileStore(store_dir).lock(writer=PROFILE_SOURCE) as store:
                store.clear()
        return summary

    recbole_tokens = {k: train.field2token_id[FIELDS[k]] for k in ("user", "item")}
    kinds = _store_kinds(texts, vectors, tokens, recbole_tokens)
    manifest = {
        "dataset": name,
        "split_fingerprint": summary["split_fingerprint"],
        "llm": LLM_IDENTITY,
        "embedder": embedder_identity,
        "dim": int(vectors["user"].shape[1]),
        "counts": {k: len(kinds[k][0]) for k in kinds},
        "source": os.path.abspath(src),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_store(store_dir, manifest, kinds)
    summary["profile_dir"] = store_dir
    summary["profiles"] = {k: len(kinds[k][2]) for k in kinds}
    summary["vectors"] = manifest["counts"]
    return summary


def _texts_to_embed(src, texts, vectors):
    r"""Whether the store's vectors are to be embedded here from the profile texts (both kinds have
    texts, neither has vectors); texts of one kind alone cannot make a store."""
    if vectors["user"] is not None:
        return False
    present = [PROFILE_FILES[k] for k in texts if texts[k] is not None]
    if len(present) == 1:
        raise RLMRecImportError(
            f"{os.path.join(src, present[0])}: profile texts of one kind only and no vectors; a store needs user and "
            "item vectors (add usr_emb_np.pkl and itm_emb_np.pkl, or both usr_prf.pkl and itm_prf.pkl)"
        )
    return len(present) == 2


def _expand_embedded(embedded, texts, n):
    r"""Embedded rows (one per profiled index) as [n, d] tables; rows of unprofiled ids are NaN, which
    :func:`_store_kinds` leaves out of the store."""
    vectors = {}
    for kind in ("user", "item"):
        table = np.full((n[kind], embedded[kind].shape[1]), np.nan, dtype=np.float32)
        table[sorted(texts[kind])] = embedded[kind]
        vectors[kind] = table
    return vectors


def _refuse_overwrite(dataset_dir, name, store_dir, force):
    existing = [p for p in (os.path.join(dataset_dir, f"{name}.{s}.inter") for s, _ in SPLITS) if os.path.exists(p)]
    if os.path.isfile(os.path.join(store_dir, "manifest.json")):
        existing.append(store_dir)
    if existing and not force:
        raise RLMRecImportError(f"{', '.join(existing)} already exist(s); pass --force to overwrite")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recbole_llm.data.import_rlmrec",
        description="Convert an RLMRec dataset folder into RecBole benchmark files and a profile store.",
    )
    parser.add_argument("src", help="RLMRec dataset folder (trn_mat.pkl val_mat.pkl tst_mat.pkl [usr_prf.pkl ...])")
    parser.add_argument("--name", required=True, help="RecBole dataset name, e.g. rlmrec-amazon-book")
    parser.add_argument("--out", required=True, help="RecBole data_path: files go to OUT/NAME/")
    parser.add_argument("--profile-dir", default=None, help="profile store directory (default profiles/NAME, the run's default)")
    parser.add_argument("--embedder", default=None, help="embed profile texts with this sentence-transformers model when the folder has no vectors (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--user-map", default=None, help="user mapper JSON lines (default: SRC/*_user.json if present)")
    parser.add_argument("--item-map", default=None, help="item mapper JSON lines (default: SRC/*_item.json if present)")
    parser.add_argument("--force", action="store_true", help="overwrite existing benchmark files and profile store")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = import_rlmrec(
            args.src, args.name, args.out, args.profile_dir, args.embedder, args.force, args.user_map, args.item_map
        )
    except RLMRecImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = summary["interactions"]
    print(f"{summary['dataset_dir']}: {summary['users']} users, {summary['items']} items, "
          f"{counts['train']} / {counts['valid']} / {counts['test']} train / valid / test interactions")
    if summary["profile_dir"]:
        print(f"profile store {summary['profile_dir']}: {summary['vectors']} vectors, {summary['profiles']} texts")
    print(f"run: {run_command(args.name, args.out, summary['profile_dir'])}")
    return 0


def run_command(name, out, store_dir):
    r"""The training command for the imported data (properties/dataset/NAME.yaml, when there is one,
    already names the benchmark files)."""
    from recbole_llm.properties import PROPERTIES_DIR

    command = f"python run_recbole_llm.py --model=LightGCN_RLM --dataset={name} --data_path={out}"
    if not os.path.isfile(os.path.join(PROPERTIES_DIR, "dataset", f"{name}.yaml")):
        command += " --benchmark_filename=\"['train','valid','test']\""
    if store_dir and os.path.normpath(store_dir) != os.path.join("profiles", name):
        command += f" --profile_dir={store_dir}"
    return command


if __name__ == "__main__":
    sys.exit(main())
