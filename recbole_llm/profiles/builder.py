r"""Build or complete a profile store for one dataset and split: items first, then users.

Only what is missing or stale is (re)generated: a profile whose prompt hash or writer changed, a
vector whose text or embedder changed. Every finished profile is appended to the store at once;
a failed one is recorded as failed and tried again by the next build. User prompts include the
items' profiles, so items are written first and a changed item profile makes its users stale.
"""

import hashlib
import math
import os
import time
from logging import getLogger

import numpy as np

from recbole_llm.profiles.backends import TemplateBackend
from recbole_llm.profiles.embedders import make_embedder
from recbole_llm.profiles.pricing import estimate as estimate_cost
from recbole_llm.profiles.pricing import token_cost
from recbole_llm.profiles.progress import is_terminal, progress_bar
from recbole_llm.profiles.prompts import estimate_tokens
from recbole_llm.profiles.records import item_records, split_fingerprint, user_records
from recbole_llm.profiles.store import KINDS, ProfileStore, text_sha


def make_backend(settings):
    r"""The profile writer named by ``llm_backend``; the LLM ones (:mod:`recbole_llm.profiles.llm`)
    are imported only when named."""
    if settings.llm_backend == "template":
        return TemplateBackend()
    if settings.llm_backend == "openai-batch":
        from recbole_llm.profiles.openai_batch import OpenAIBatchBackend

        return OpenAIBatchBackend(settings)
    from recbole_llm.profiles.llm import HFBackend, OpenAIBackend

    return {"openai": OpenAIBackend, "hf": HFBackend}[settings.llm_backend](settings)


def prompt_sha(prompt):
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class ProfileBuilder:
    r"""Plans and runs the (re)generation of one store from a dataset's training split."""

    def __init__(self, settings, train_dataset, show_progress=None):
        self.settings = settings
        self.dataset = train_dataset
        self.store = ProfileStore(settings.store_dir)
        self.backend = make_backend(settings)
        self.embedder = make_embedder(settings)
        self.show_progress = settings.show_progress if show_progress is None else show_progress
        self.logger = getLogger()
        self._items = item_records(settings, train_dataset)

    def records(self, kind):
        return self._items if kind == "item" else user_records(self.settings, self.dataset, self._items)

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
        r"""Per kind: counts of done / failed / stale / missing profiles (they add up to the total).

        *failed*: the last attempt with the current prompt failed (its error is in ``errors``);
        *stale*: a profile exists, but for another prompt or writer; *missing*: none yet.
        """
        report = {}
        manifest = self.store.read_manifest() if self.store.exists() else {}
        for kind in KINDS:
            existing, failures = self.store.read_records(kind), self.store.read_failures(kind)
            prompts, todo = self.plan(kind)
            failed = [
                t for t in todo
                if t in failures and failures[t]["prompt_sha"] == prompt_sha(prompts[t]) and failures[t]["source"] == self.backend.identity
            ]
            failed_set = set(failed)
            stale = [t for t in todo if t in existing and t not in failed_set]
            report[kind] = {
                "total": len(prompts),
                "done": len(prompts) - len(todo),
                "failed": len(failed),
                "stale": len(stale),
                "missing": len(todo) - len(stale) - len(failed),
                "examples": todo[:5],
                "errors": {t: failures[t]["error"] for t in failed[:5]},
            }
        report["split_matches"] = manifest.get("split_fingerprint") == split_fingerprint(self.dataset)
        report["manifest"] = manifest
        return report

    def build(self, force=False, limit=None):
        r"""Complete the store; returns a summary dict. Holds the store's lock while writing.

        ``limit``: generate at most this many profiles per kind in this run (a trial, or a budget).
        Summary: ``generated``, ``failed``, ``retried``, ``embedded`` (per kind), ``remaining`` (per
        kind, left by ``limit``), ``seconds``, and ``tokens`` when the server reports usage.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        started = time.time()
        summary = {"generated": {}, "embedded": {}, "failed": {}, "retried": {}, "remaining": {}}
        first = last = self._stats()
        with self.store.lock():
            for kind in KINDS:
                prompts, todo = self.plan(kind, force)
                summary["remaining"][kind] = max(0, len(todo) - limit) if limit is not None else 0
                todo = todo if limit is None else todo[:limit]
                summary["generated"][kind], summary["failed"][kind] = self._generate(kind, prompts, todo)
                now = self._stats()
                summary["retried"][kind], last = now["retried"] - last["retried"], now
                summary["embedded"][kind] = self._embed(kind, list(prompts), force)
            self._write_manifest()
        summary["seconds"] = round(time.time() - started, 1)
        if last["tokens"] is not None:
            before = first["tokens"] or {"prompt": 0, "completion": 0}
            summary["tokens"] = {k: last["tokens"][k] - before[k] for k in ("prompt", "completion")}
            cost = token_cost(self.settings, summary["tokens"]["prompt"], summary["tokens"]["completion"])
            if cost is not None:  # llm_price_input / llm_price_output given
                summary["cost"] = round(cost, 6)
        return summary

    def _stats(self):
        r"""The backend's running counters (the template backend has none)."""
        stats = getattr(self.backend, "stats", None)
        return stats.snapshot() if stats is not None else {"retried": 0, "tokens": None}

    def _generate(self, kind, prompts, todo):
        if not todo:
            return 0, 0
        self.logger.info(f"Writing {len(todo)} {kind} profiles with {self.backend.identity} into {self.store.path}")
        done, failed, succeeded = 0, 0, set()
        retried_before = self._stats()["retried"]
        results = self.backend.generate(kind, [prompts[t] for t in todo])
        bar = progress_bar(len(todo), f"{kind} profiles", kind, self.show_progress)
        try:
            for index, result in results:
                token = todo[index]
                sha = prompt_sha(prompts[token])
                if result.error is not None:
                    failed += 1
                    self.logger.warning(f"{kind} {token}: profile generation failed: {result.error}")
                    self.store.append_failure(kind, {
                        "id": token,
                        "error": result.error,
                        "prompt_sha": sha,
                        "source": self.backend.identity,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    })
                else:
                    record = {
                        "id": token,
                        "profile": result.profile,
                        "reasoning": result.reasoning,
                        "source": self.backend.identity,
                        "prompt_sha": sha,
                    }
                    if result.unparsed is not None:  # llm_unparsed: keep_raw
                        record["unparsed"] = result.unparsed
                    self.store.append(kind, record)
                    succeeded.add(token)
                    done += 1
                bar.update(1)
                bar.set_postfix(failed=failed, retried=self._stats()["retried"] - retried_before, refresh=False)
        finally:
            bar.close()
            if hasattr(results, "close"):
                results.close()  # stops an LLM backend's requests when this loop ends early (an error, Ctrl-C)
            failures = self.store.read_failures(kind)
            self.store.rewrite_failures(kind, {t: f for t, f in failures.items() if t not in succeeded})
        return done, failed

    def preview(self, limit=None, samples=2):
        r"""What a build would send, sending nothing: per kind the number of requests, the estimated
        prompt tokens and ``samples`` sample prompts; and the number of texts to embed."""
        report = {"llm": self.backend.identity, "embedder": self.embedder.identity, "kinds": {}}
        for kind in KINDS:
            prompts, todo = self.plan(kind)
            todo = todo if limit is None else todo[:limit]
            report["kinds"][kind] = {
                "requests": len(todo),
                "prompt_tokens": sum(estimate_tokens(prompts[t]) for t in todo),
                "samples": {t: prompts[t] for t in todo[:samples]},
            }
        # LLM user prompts describe items by their profiles: the ones not written yet will add to them.
        report["items_pending"] = report["kinds"]["item"]["requests"] if self.backend.identity != "template" else 0
        if self.backend.identity != "template":
            requests, tokens = (sum(k[key] for k in report["kinds"].values()) for key in ("requests", "prompt_tokens"))
            report["cost"] = estimate_cost(self.settings, requests, tokens)  # None without prices
        texts = sum(k["requests"] for k in report["kinds"].values())
        report["embed_texts"] = texts
        report["embed_batches"] = math.ceil(texts / self.embedder.batch_size) if texts else 0
        return report

    def _vector_plan(self, kind, tokens, force=False):
        r"""For ``tokens`` (dataset order) with a record: (tokens, texts, text shas, reusable vectors
        by (id, sha), positions to embed)."""
        records = self.store.read_records(kind)
        tokens = [t for t in tokens if t in records]
        texts = [records[t]["profile"] for t in tokens]
        shas = [text_sha(t) for t in texts]
        old = {}
        manifest = self.store.read_manifest() if self.store.exists() else {}
        if not force and manifest.get("embedder") == self.embedder.identity and os.path.isfile(self.store.kind_file(kind, "vectors")):
            ids, vectors, old_shas = self.store.read_vectors(kind)
            if old_shas is not None:
                old = {(i, s): v for i, s, v in zip(ids, old_shas, vectors)}
        missing = [n for n, key in enumerate(zip(tokens, shas)) if key not in old]
        return tokens, texts, shas, old, missing

    def _embed(self, kind, tokens, force):
        r"""Write vectors for ``tokens`` (dataset order), embedding only new or changed texts."""
        self.store.rewrite_records(kind, self.store.read_records(kind))  # compact the append log
        tokens, texts, shas, old, missing = self._vector_plan(kind, tokens, force)
        if not missing and len(old) == len(tokens):
            return 0
        fresh = {}
        if missing:
            self.logger.info(f"Embedding {len(missing)} {kind} profiles with {self.embedder.identity}")
            vectors = self.embedder.embed([texts[n] for n in missing], show_progress=self.show_progress and is_terminal())
            fresh = dict(zip(missing, vectors))
        matrix = np.stack([fresh[n] if n in fresh else old[(t, s)] for n, (t, s) in enumerate(zip(tokens, shas))])
        self.store.write_vectors(kind, tokens, matrix, shas)
        return len(missing)

    def pending(self):
        r"""What a build would do now, doing nothing: per kind, profiles to write and vectors to
        compute; ``{}`` when the store is complete and current for this split, writer and embedder."""
        if not self.store.exists() or self.store.read_manifest().get("split_fingerprint") != split_fingerprint(self.dataset):
            return {"store": "missing or made for another training split"}
        work = {}
        for kind in KINDS:
            prompts, todo = self.plan(kind)
            tokens, _, _, old, missing = self._vector_plan(kind, list(prompts))
            if todo or missing or len(old) != len(tokens):
                work[kind] = {"write": len(todo), "embed": len(missing)}
        return work

    def _write_manifest(self):
        if not all(os.path.isfile(self.store.kind_file(kind, "vectors")) for kind in KINDS):
            # Every profile of a kind failed: no usable store yet, and none is claimed (the next
            # build, or a training run, tries again).
            self.logger.warning(f"No manifest written in {self.store.path}: no {'/'.join(KINDS)} profile vectors yet")
            return
        counts, dims = {}, set()
        for kind in KINDS:
            ids, vectors, _ = self.store.read_vectors(kind)
            counts[kind] = len(ids)
            dims.add(int(vectors.shape[1]))
        manifest = {
            "dataset": self.settings.dataset,
            "split_fingerprint": split_fingerprint(self.dataset),
            "llm": self.backend.identity,
            "embedder": self.embedder.identity,
            "dim": dims.pop() if len(dims) == 1 else sorted(dims),
            "counts": counts,
        }
        old = self.store.read_manifest() if self.store.exists() else {}
        if {k: old.get(k) for k in manifest} != manifest:
            self.store.write_manifest({**manifest, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
