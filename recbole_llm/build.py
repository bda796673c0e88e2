r"""When profiles are built: the entry points' side of the profile store.

Entry points (``run_recbole_llm``, ``run``, tuning, the ``profiles`` command) call
:func:`ensure_profiles` once, after RecBole built the training split and before any model is built;
models only read the store (:mod:`recbole_llm.data.loader`). In a multi-process run rank 0 builds
and the other ranks wait for it, then read.

A missing store is built with the configured writer and embedder. A store they wrote is brought up
to date when something is missing or stale (nothing is touched when it is current; profiles paid
for are never replaced, see docs/profiles-store.md). A store written by something else (another
LLM, an import) is used as written if it was made for this training split, and refused otherwise.
Under ``profile_missing: error`` a dataset that gives the writer nothing but ids is refused.
"""

from logging import getLogger

import torch.distributed as dist

from recbole_llm.profiles.builder import ProfileBuilder
from recbole_llm.profiles.records import split_fingerprint
from recbole_llm.profiles.settings import ProfileSettings
from recbole_llm.profiles.store import ProfileStore, ProfileStoreError
from recbole_llm.utils import get_model


def profile_settings(config, **overrides):
    r"""The profiles layer's typed settings from a RecBole ``Config`` (or any mapping)."""
    return ProfileSettings.from_mapping(config, **overrides)


def reads_profiles(config):
    r"""Whether the configured model reads profile vectors (an ``<Base>_RLM`` that aligns)."""
    model_class = getattr(config, "model_class", None) or get_model(config["model"])
    return getattr(model_class, "reads_profiles", lambda _: False)(config)


def make_builder(config, train_dataset, show_progress=None):
    r"""The builder of ``config``'s store; under ``profile_missing: error`` it refuses to write
    profiles that could say nothing but ids (:meth:`ProfileBuilder.check_text`)."""
    return ProfileBuilder(profile_settings(config), train_dataset, show_progress, require_text=config["profile_missing"] == "error")


def build_profiles(config, train_dataset, force=False, show_progress=None):
    r"""Build or complete the store of ``config`` for ``train_dataset``; returns the build summary."""
    return make_builder(config, train_dataset, show_progress).build(force=force)


def ensure_profiles(config, train_dataset):
    r"""Make the run's store ready for its model (see the module docstring); rank 0 only in a
    multi-process run, the other ranks wait and then raise rank 0's error, if any."""
    if not reads_profiles(config):
        return
    if config["single_spec"]:
        _ensure(config, train_dataset)
        return
    failure, message = None, [None]
    if dist.get_rank() == 0:
        try:
            _ensure(config, train_dataset)
        except Exception as e:  # noqa: BLE001 (re-raised below, once the waiting ranks know)
            failure, message = e, [f"{type(e).__name__}: {e}"]
    dist.broadcast_object_list(message, src=0)
    if failure is not None:
        raise failure
    if message[0] is not None:
        raise ProfileStoreError(f"rank 0 could not prepare the profile store: {message[0]}")


def _ensure(config, train_dataset):
    logger = getLogger()
    settings = profile_settings(config)
    store = ProfileStore(settings.store_dir, settings.dataset)
    builder = make_builder(config, train_dataset)
    if not store.exists():
        logger.info(f"No profile store at {store.path}: building it now (run `python -m recbole_llm.profiles build` to do this ahead).")
        summary = builder.build()
        logger.info(f"Profile store built: {summary}")
        return
    manifest = store.read_manifest()
    if manifest.get("llm") == builder.backend.identity and manifest.get("embedder") == builder.embedder.identity:
        work = builder.pending()
        if work:
            logger.info(f"Profile store {store.path} is not up to date ({work}): completing it.")
            logger.info(f"Profile store {store.path} brought up to date: {builder.build()}")
        return
    if manifest.get("split_fingerprint") != split_fingerprint(train_dataset):
        raise ProfileStoreError(
            f"{store.file('manifest.json')}: the store's user profiles were written for another training split "
            f"(written by {manifest.get('llm')}), so they would leak or mismatch this run's split. Rebuild it for "
            f"this split with `python -m recbole_llm.profiles build --dataset={config['dataset']} --force` "
            "(same config files), or point profile_dir at a store built for this split."
        )
    logger.info(
        f"Using profile store {store.path} as written (llm {manifest.get('llm')}, embedder {manifest.get('embedder')}); "
        f"the config names {builder.backend.identity} / {builder.embedder.identity}: rebuild with --force to switch."
    )
