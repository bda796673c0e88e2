r"""Build or complete a profile store for one dataset and split: items first, then users.

Only what is missing or stale is (re)generated: a profile whose prompt hash or writer changed, a
vector whose text or embedder changed. Every finished profile is appended to the store at once.
"""

import hashlib
import os
import time
from logging import getLogger

import numpy as np
from tqdm import tqdm

from recbole_llm.profiles.backends import make_backend
from recbole_llm.profiles.embedders import make_embedder
from recbole_llm.profiles.records import item_records, split_fingerprint, user_records
from recbole_llm.profiles.store import KINDS, ProfileStore, text_sha


def profile_dir(config):
    return config["profile_dir"] or os.path.join("profiles", config["dataset"])


def prompt_sha(prompt):
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class ProfileBuilder:
    r"""Plans and runs the (re)generation of one store from a dataset's training split."""

    def __init__(self, config, train_dataset, show_progress=None):
        self.config = config
        self.dataset = train_dataset
        self.store = ProfileStore(profile_dir(config))
        self.backend = make_backend(config)
        self.embedder = make_embedder(config)
        self.show_progress = config["show_progress"] if show_progress is None else show_progress
        self.logger = getLogger()
        self._items = item_records(config, train_dataset)

    def records(self, kind):
        return self._items if kind == "item" else user_records(self.config, self.dataset, self._items)

    def plan(self, kind, force=False):
        r"""Return (prompts by id, ids to generate) given what the store holds."""
        existing = self.store.read_records(kind)
        item_profiles = None
        if kind == "user":
            item_profiles = {k: r["profile"] for k, r in self.store.read_records("item").items()}
        prompts = {
            token: self.backend.prompt(kind, record, item_profiles)
            for token, record in self.records(kind).items()
        }
        todo = [
            token
            for token, prompt in prompts.items()
            if force
            or token not in existing
            or existing[token]["prompt_sha"] != prompt_sha(prompt)
            or existing[token]["source"] != self.backend.identity
        ]
        return prompts, todo

    def status(self):
        r"""Per kind: counts of done / stale / missing profiles and of vectors to (re)embed."""
        report = {}
        manifest = self.store.read_manifest() if self.store.exists() else {}
        for kind in KINDS:
            existing = self.store.read_records(kind)
            prompts, todo = self.plan(kind)
            stale = [t for t in todo if t in existing]
            report[kind] = {
                "total": len(prompts),
                "done": len(prompts) - len(todo),
                "stale": len(stale),
                "missing": len(todo) - len(stale),
                "examples": todo[:5],
            }
        report["split_matches"] = manifest.get("split_fingerprint") == split_fingerprint(self.dataset)
        report["manifest"] = manifest
        return report

    def build(self, force=False):
        r"""Complete the store; returns a summary dict. Holds the store's lock while writing."""
        started = time.time()
        summary = {"generated": {}, "embedded": {}, "failed": {}}
        with self.store.lock():
            for kind in KINDS:
                prompts, todo = self.plan(kind, force)
                summary["generated"][kind], summary["failed"][kind] = self._generate(kind, prompts, todo)
                summary["embedded"][kind] = self._embed(kind, list(prompts), force)
            self._write_manifest()
        summary["seconds"] = round(time.time() - started, 1)
        return summary

    def _generate(self, kind, prompts, todo):
        if not todo:
            return 0, 0
        self.logger.info(f"Writing {len(todo)} {kind} profiles with {self.backend.identity} into {self.store.path}")
        done = failed = 0
        results = self.backend.generate(kind, [prompts[t] for t in todo])
        bar = tqdm(total=len(todo), desc=f"{kind} profiles", unit=kind, disable=not self.show_progress)
        for index, result in results:
            token = todo[index]
            if result.error is not None:
                failed += 1
                self.logger.warning(f"{kind} {token}: profile generation failed: {result.error}")
            else:
                record = {
                    "id": token,
                    "profile": result.profile,
                    "reasoning": result.reasoning,
                    "source": self.backend.identity,
                    "prompt_sha": prompt_sha(prompts[token]),
                }
                self.store.append(kind, record)
                done += 1
            bar.update(1)
            bar.set_postfix(failed=failed)
        bar.close()
        return done, failed

    def _embed(self, kind, tokens, force):
        r"""Write vectors for ``tokens`` (dataset order), embedding only new or changed texts."""
        records = self.store.read_records(kind)
        self.store.rewrite_records(kind, records)  # compact the append log
        tokens = [t for t in tokens if t in records]
        texts = [records[t]["profile"] for t in tokens]
        shas = [text_sha(t) for t in texts]
        old = {}
        manifest = self.store.read_manifest() if self.store.exists() else {}
        if not force and manifest.get("embedder") == self.embedder.identity and os.path.isfile(self.store.file(f"{kind}.npy")):
            ids, vectors, old_shas = self.store.read_vectors(kind)
            if old_shas is not None:
                old = {(i, s): v for i, s, v in zip(ids, old_shas, vectors)}
        missing = [n for n, key in enumerate(zip(tokens, shas)) if key not in old]
        if not missing and len(old) == len(tokens):
            return 0
        fresh = {}
        if missing:
            self.logger.info(f"Embedding {len(missing)} {kind} profiles with {self.embedder.identity}")
            vectors = self.embedder.embed([texts[n] for n in missing], show_progress=self.show_progress)
            fresh = dict(zip(missing, vectors))
        matrix = np.stack([fresh[n] if n in fresh else old[(t, s)] for n, (t, s) in enumerate(zip(tokens, shas))])
        self.store.write_vectors(kind, tokens, matrix, shas)
        return len(missing)

    def _write_manifest(self):
        counts, dims = {}, set()
        for kind in KINDS:
            ids, vectors, _ = self.store.read_vectors(kind)
            counts[kind] = len(ids)
            dims.add(int(vectors.shape[1]))
        manifest = {
            "dataset": self.config["dataset"],
            "split_fingerprint": split_fingerprint(self.dataset),
            "llm": self.backend.identity,
            "embedder": self.embedder.identity,
            "dim": dims.pop() if len(dims) == 1 else sorted(dims),
            "counts": counts,
        }
        old = self.store.read_manifest() if self.store.exists() else {}
        if {k: old.get(k) for k in manifest} != manifest:
            self.store.write_manifest({**manifest, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def build_profiles(config, train_dataset, force=False, show_progress=None):
    r"""Build or complete the store of ``config`` for ``train_dataset``; returns the summary."""
    return ProfileBuilder(config, train_dataset, show_progress).build(force=force)
