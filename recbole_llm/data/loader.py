r"""The read-only profile loader: profile vectors as float tensors in RecBole's internal id order.

A model reads its profile vectors here and nowhere else. The loader reads the store and writes
nothing, never builds, never calls an LLM or an embedder: a missing store, one written for another
training split (its user profiles would leak or mismatch), or one that lacks profiles
(``profile_missing: error``) is refused with the command that fixes it. Building is the entry
points' job (:mod:`recbole_llm.build`).

Rows are matched by raw token after RecBole's filtering and remapping, never by file order; row 0
(RecBole's padding id) is zero. ``profile_reduce_dim`` optionally narrows the vectors once, at
load (:func:`reduce_dim`, :func:`reduce_profiles`).
"""

from logging import getLogger

import numpy as np
import torch

from recbole_llm.profiles.records import split_fingerprint
from recbole_llm.profiles.store import BUILD_COMMAND, EMBED_COMMAND, ProfileStore, ProfileStoreError, store_dir


def profile_tensors(config, train_dataset):
    r"""Return (user_profile [n_users, d], item_profile [n_items, d]) float32 tensors for the run."""
    user, item, _ = profiles_with_presence(config, train_dataset)
    return user, item


def profiles_with_presence(config, train_dataset, user_missing=None):
    r""":func:`profile_tensors` and a bool tensor [n_users]: which users have a profile in the store.

    ``user_missing`` overrides ``profile_missing`` for users; ``"skip"`` leaves their rows zero
    without a warning, for a caller that leaves those users out of its loss and says so itself.
    """
    user, item, user_present, store = checked_profiles(config, train_dataset, user_missing)
    dim = reduce_dim(config)
    if dim is not None:
        user, item = reduce_profiles(user, item, dim, store.path)
    return torch.from_numpy(user), torch.from_numpy(item), torch.from_numpy(user_present)


# profile_reduce_dim: auto. Gen's decoder reconstructs the profile vectors, and reconstructing their
# 64-d projection cost it accuracy on ml-100k where Con lost none (results/ml-100k-defaults.md).
AUTO_REDUCE_DIM = {"con": 64, "gen": None, "none": 64}


def reduce_dim(config):
    r"""``profile_reduce_dim`` with ``auto`` resolved by ``align``: 64 for Con (and for cold-start
    scoring alone), the whole vectors (``None``) for Gen."""
    dim = config["profile_reduce_dim"]
    return AUTO_REDUCE_DIM[config["align"]] if dim == "auto" else dim


def checked_profiles(config, train_dataset, user_missing=None):
    r"""(user table, item table, user presence, store): every check training makes of the store, in
    one place (``profiles status`` runs it too): the store exists and was made for this split; each
    kind's vector set is whole (sealed), finite, without duplicate ids and one row per id; its ids are
    the dataset's; both kinds and the manifest agree on the dimension; ``profile_missing`` (for users
    ``user_missing`` when given) holds."""
    store = read_store(config, train_dataset)
    policy = config["profile_missing"]
    require_seal = store.read_manifest().get("format_version", 1) >= 2
    user, user_present = _aligned(store, "user", train_dataset, train_dataset.uid_field, user_missing or policy, require_seal)
    item, _ = _aligned(store, "item", train_dataset, train_dataset.iid_field, policy, require_seal)
    reembed = store.command(EMBED_COMMAND)
    if user.shape[1] != item.shape[1]:
        raise ProfileStoreError(
            f"{store.file('user.npy')} has dim {user.shape[1]} but {store.file('item.npy')} has dim {item.shape[1]}: "
            f"both must come from the same embedder. Re-embed both kinds with one embedder, with no LLM request: `{reembed} --rewrite`."
        )
    manifest_dim = store.read_manifest().get("dim")
    if manifest_dim is not None and manifest_dim != user.shape[1]:
        raise ProfileStoreError(
            f"{store.file('manifest.json')} says dim {manifest_dim}, the vectors have {user.shape[1]}. "
            f"Write the manifest again, with no LLM request: `{reembed}`."
        )
    return user, item, user_present, store


def reduce_profiles(user, item, dim, source):
    r"""Project user and item profiles onto the top ``dim`` right singular vectors of all of them.

    An uncentred truncated SVD: the projected vectors' dot products are the best rank-``dim``
    approximation of the originals' (Eckart-Young), so their geometry changes as little as that
    width allows, while the alignment MLPs, whose cost grows with the profile width, shrink by
    ``d / dim``. The vectors stay whole in the store; this runs once per model build. Vectors of at
    most ``dim`` dimensions are returned as they are.
    """
    d = user.shape[1]
    if dim >= d:
        getLogger().info(f"profile_reduce_dim={dim}: the profile vectors of {source} have {d} dims already; used whole.")
        return user, item
    gram = (user.T @ user + item.T @ item).astype(np.float64)
    energy, basis = np.linalg.eigh(gram)  # ascending
    top = basis[:, ::-1][:, :dim]
    # A solver may return any sign per direction: fix it (largest component positive) so that every
    # process of a multi-process run, on any machine, feeds its model the same vectors.
    top = top * np.sign(top[np.abs(top).argmax(axis=0), np.arange(dim)])
    top = np.ascontiguousarray(top, dtype=np.float32)
    kept = energy[::-1][:dim].sum() / max(energy.sum(), np.finfo(np.float64).tiny)
    getLogger().info(f"profile_reduce_dim={dim}: profile vectors {d} -> {dim} dims, keeping {kept:.1%} of their energy.")
    return user @ top, item @ top


def read_store(config, train_dataset):
    r"""The run's store, checked to exist and to be made for this run's training split."""
    store = ProfileStore(store_dir(config["profile_dir"], config["dataset"]), config["dataset"])
    build = BUILD_COMMAND.format(dataset=config["dataset"]) + " (with this run's config files and keys)"
    if not store.exists():
        raise ProfileStoreError(
            f"No profile store at {store.path}: build it first with `{build}`; run_recbole_llm builds a missing store itself."
        )
    manifest = store.read_manifest()
    if manifest.get("split_fingerprint") != split_fingerprint(train_dataset):
        raise ProfileStoreError(
            f"{store.file('manifest.json')}: the store's user profiles were written for another training split "
            f"(written by {manifest.get('llm')}), so they would leak or mismatch this run's split. Update it for this "
            f"split with `{build}`, or point profile_dir at a store built for this split."
        )
    return store


def _aligned(store, kind, dataset, field, policy, require_seal=True):
    ids, vectors, _ = store.read_vectors(kind, require_seal=require_seal)
    ids_file = store.kind_file(kind, "ids")
    token2id = dataset.field2token_id[field]
    internal = np.fromiter((token2id.get(t, -1) for t in ids), dtype=np.int64, count=len(ids))
    extra = [t for t, i in zip(ids, internal) if i <= 0]
    if extra:
        raise ProfileStoreError(
            f"{ids_file}: {len(extra)} {kind} ids are not in dataset {dataset.dataset_name} "
            f"after filtering (e.g. {extra[:5]}). The store was built for other data or filtering: rebuild it with "
            f"`python -m recbole_llm.profiles build --dataset={dataset.dataset_name} --force` or set profile_dir."
        )
    n = dataset.num(field)
    table = np.zeros((n, vectors.shape[1]), dtype=np.float32)
    table[internal] = vectors
    present = np.zeros(n, dtype=bool)
    present[internal] = True
    missing = np.flatnonzero(~present[1:]) + 1
    if len(missing):
        tokens = dataset.field2id_token[field][missing[:5]].tolist()
        message = f"{len(missing)} of {n - 1} {kind}s of dataset {dataset.dataset_name} have no profile in {store.path} (e.g. {tokens})"
        if policy == "error":
            raise ProfileStoreError(
                f"{message}. Complete the store with `python -m recbole_llm.profiles build --dataset={dataset.dataset_name}`, "
                "or set profile_missing: zero or mean."
            )
        if policy == "mean":
            table[missing] = vectors.mean(axis=0)
        if policy != "skip":
            getLogger().warning(f"{message}: using {policy} vectors for them (profile_missing={policy}).")
    return table, present
