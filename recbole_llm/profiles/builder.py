r"""Build or complete a profile store for one dataset and split: items first, then users.

What a build writes (docs/profiles-store.md):

- *missing* profiles, always (with the configured writer, whichever wrote the others);
- *stale* profiles (their prompt or writer changed) written by the ``template`` writer, which
  cost nothing to write again;
- never a profile paid for (written by an LLM, or imported) that is merely stale: it is *kept*,
  and replaced only by ``rewrite=True`` (stale ones) or ``force=True`` (all), which the command
  line announces with their count and cost in requests before it starts;
- vectors for texts that have none, or whose text or embedder changed. Vectors are reused by the
  embedder identity in each kind's seal, so a resumed build re-embeds nothing it finished. The
  embedder of an existing store is not switched without ``rewrite``/``force``.

Every finished profile is appended to the store at once; a failed one is recorded as failed and
tried again by the next build. User prompts include the items' profiles, so items are written first.
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
from recbole_llm.profiles.records import describe_text_fields, item_records, split_fingerprint, user_records
from recbole_llm.profiles.store import FORMAT_VERSION, KINDS, ProfileStore, ProfileStoreError, text_sha

FREE_WRITERS = ("template",)  # their profiles cost nothing to write again: stale ones are replaced freely


class IdsOnlyError(ProfileStoreError):
    r"""The dataset gives the profile writer nothing but ids (``profile_missing: error``)."""


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

    def __init__(self, settings, train_dataset, show_progress=None, require_text=False):
        self.settings = settings
        self.require_text = require_text  # refuse to write profiles from ids alone (check_text)
        self.dataset = train_dataset
        self.store = ProfileStore(settings.store_dir, settings.dataset)
        self.backend = make_backend(settings)
        self.embedder = make_embedder(settings)
        self.show_progress = settings.show_progress if show_progress is None else show_progress
        self.logger = getLogger()
        self._items = item_records(settings, train_dataset)

    def records(self, kind):
        return self._items if kind == "item" else user_records(self.settings, self.dataset, self._items)

    def prompts(self, kind):
        r"""The exact prompt of every profile of ``kind``, by raw id, given the store's item profiles."""
        item_profiles = None
        if kind == "user":
            item_profiles = {k: r["profile"] for k, r in self.store.read_records("item").items()}
        return {token: self.backend.prompt(kind, record, item_profiles) for token, record in self.records(kind).items()}

    def classify(self, kind, prompts=None):
        r"""``kind``'s ids by state: ``current`` (this prompt, this writer), ``kept`` (stale, paid for:
        replaced only when asked), ``stale`` (stale, free to write again), ``missing``."""
        prompts = self.prompts(kind) if prompts is None else prompts
        existing = self.store.read_records(kind)
        states = {"current": [], "kept": [], "stale": [], "missing": []}
        for token, prompt in prompts.items():
            record = existing.get(token)
            if record is None:
                states["missing"].append(token)
            elif record["prompt_sha"] == prompt_sha(prompt) and record["source"] == self.backend.identity:
                states["current"].append(token)
            elif record["source"] in FREE_WRITERS:
                states["stale"].append(token)
            else:
                states["kept"].append(token)
        return states

    def plan(self, kind, force=False, rewrite=False):
        r"""Return (prompts by id, ids to generate) given what the store holds: the missing and
        free stale ones; with ``rewrite`` the kept ones too; with ``force`` every one."""
        prompts = self.prompts(kind)
        if force:
            return prompts, list(prompts)
        states = self.classify(kind, prompts)
        chosen = set(states["missing"]) | set(states["stale"]) | (set(states["kept"]) if rewrite else set())
        return prompts, [t for t in prompts if t in chosen]

    def replacements(self, force=False, rewrite=False):
        r"""What ``force``/``rewrite`` would replace beyond a plain build, per kind: the number of
        existing profiles, by the writer that wrote them, and the requests it costs (0 for the
        template writer); plus the texts to re-embed with another embedder."""
        report = {"writer": self.backend.identity, "kinds": {}, "requests": 0}
        for kind in KINDS:
            states = self.classify(kind)
            replaced = states["current"] + states["kept"] if force else states["kept"] if rewrite else []
            existing = self.store.read_records(kind)
            by_writer = {}
            for token in replaced:
                by_writer[existing[token]["source"]] = by_writer.get(existing[token]["source"], 0) + 1
            report["kinds"][kind] = {"replaced": len(replaced), "by_writer": by_writer}
            if self.backend.identity not in FREE_WRITERS:
                report["requests"] += len(replaced)
        report["embedder_change"] = self._embedder_change()
        return report

    def _embedder_change(self):
        r"""(store's embedder, configured one) when the store's vectors were made by another
        embedder, else ``None``."""
        for kind in KINDS:
            seal = self._seal(kind)
            if seal is not None and seal.get("embedder") not in (None, self.embedder.identity):
                return seal["embedder"], self.embedder.identity
        manifest = self.store.read_manifest() if self.store.exists() else {}
        if manifest.get("embedder") not in (None, self.embedder.identity):
            return manifest["embedder"], self.embedder.identity
        return None

    def _seal(self, kind):
        try:
            return self.store.read_seal(kind)
        except ProfileStoreError:
            return None  # unreadable: the set is recomputed

    def check_text(self):
        r"""Refuse a dataset whose records hold nothing but ids (profiles from ids carry nothing)."""
        blank = [kind for kind in KINDS if all(set(r) <= {"id", "n_train_items", "items"} and
                                               all(set(i) <= {"id"} for i in r.get("items", ())) for r in self.records(kind).values())]
        if blank:
            raise IdsOnlyError(
                f"dataset {self.settings.dataset} gives the profile writer nothing but ids for its {' and '.join(k + 's' for k in blank)}: "
                f"{describe_text_fields(self.settings)}. Profiles written from ids alone (\"Item i0b64ce.\") carry no "
                "information to align with. Add such columns (or name them with the keys above), train the base model "
                "(align: none), or accept id-only profiles with profile_missing: zero or mean."
            )

    def status(self):
        r"""Per kind: counts of done / kept / failed / stale / missing profiles (they add up to the total).

        *done*: written for the current prompt by the current writer; *kept*: written for another
        prompt or by another writer, and paid for (an LLM, an import): kept unless ``--rewrite``;
        *failed*: the last attempt with the current prompt failed (its error is in ``errors``);
        *stale*: a free (template) profile for another prompt or writer, rewritten by the next build;
        *missing*: none yet.
        """
        report = {}
        manifest = self.store.read_manifest() if self.store.exists() else {}
        for kind in KINDS:
            failures = self.store.read_failures(kind)
            prompts = self.prompts(kind)
            states = self.classify(kind, prompts)
            todo = states["missing"] + states["stale"]
            failed = [
                t for t in todo
                if t in failures and failures[t]["prompt_sha"] == prompt_sha(prompts[t]) and failures[t]["source"] == self.backend.identity
            ]
            failed_set = set(failed)
            existing = self.store.read_records(kind)
            kept_by = {}
            for token in states["kept"]:
                kept_by[existing[token]["source"]] = kept_by.get(existing[token]["source"], 0) + 1
            report[kind] = {
                "total": len(prompts),
                "done": len(states["current"]),
                "kept": len(states["kept"]),
                "kept_by": kept_by,
                "failed": len(failed),
                "stale": len([t for t in states["stale"] if t not in failed_set]),
                "missing": len([t for t in states["missing"] if t not in failed_set]),
                "examples": todo[:5],
                "errors": {t: failures[t]["error"] for t in failed[:5]},
            }
        report["split_matches"] = manifest.get("split_fingerprint") == split_fingerprint(self.dataset)
        report["manifest"] = manifest
        return report

    def build(self, force=False, limit=None, rewrite=False):
        r"""Complete the store; returns a summary dict. Holds the store's lock while writing.

        ``force``: write and embed every profile again; ``rewrite``: also the kept ones (paid for,
        stale) and re-embed with another embedder; neither: what is missing, and free stale ones.
        ``limit``: generate at most this many profiles per kind in this run (a trial, or a budget).
        Summary: ``generated``, ``failed``, ``retried``, ``embedded`` (per kind), ``remaining`` (per
        kind, left by ``limit``), ``kept`` (per kind), ``seconds``, and ``tokens`` when the server
        reports usage.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        started = time.time()
        summary = {"generated": {}, "embedded": {}, "failed": {}, "retried": {}, "remaining": {}, "kept": {}}
        first = last = self._stats()
        with self.store.lock(writer=self.backend.identity):
            if not (force or rewrite):
                self._refuse_embedder_change()
            for kind in KINDS:
                prompts, todo = self.plan(kind, force, rewrite)
                summary["kept"][kind] = 0 if force or rewrite else len(self.classify(kind, prompts)["kept"])
                summary["remaining"][kind] = max(0, len(todo) - limit) if limit is not None else 0
                todo = todo if limit is None else todo[:limit]
                if todo and self.require_text:
                    self.check_text()
                summary["generated"][kind], summary["failed"][kind] = self._generate(kind, prompts, todo)
                now = self._stats()
                summary["retried"][kind], last = now["retried"] - last["retried"], now
                summary["embedded"][kind] = self._embed(kind, list(prompts), force or rewrite)
            self._write_manifest()
        summary["seconds"] = round(time.time() - started, 1)
        if last["tokens"] is not None:
            before = first["tokens"] or {"prompt": 0, "completion": 0}
            summary["tokens"] = {k: last["tokens"][k] - before[k] for k in ("prompt", "completion")}
            cost = token_cost(self.settings, summary["tokens"]["prompt"], summary["tokens"]["completion"])
            if cost is not None:  # llm_price_input / llm_price_output given
                summary["cost"] = round(cost, 6)
        return summary

    def embed(self, rewrite=False):
        r"""Recompute the vectors that are missing, torn or non-finite from the stored texts (with
        ``rewrite``: every vector, with the configured embedder), and write the manifest; never asks
        the writer for a profile. Returns the number of texts embedded per kind."""
        embedded = {}
        with self.store.lock(writer=f"embedder {self.embedder.identity}"):
            if not rewrite:
                self._refuse_embedder_change()
            for kind in KINDS:
                embedded[kind] = self._embed(kind, list(self.records(kind)), force=rewrite)
            self._write_manifest()
        return embedded

    def _refuse_embedder_change(self):
        change = self._embedder_change()
        if change is not None:
            raise ProfileStoreError(
                f"{self.store.path}: its vectors were made by {change[0]}, this build's embedder is {change[1]}. "
                f"The vectors are kept: pass --embedder={change[0].partition(':')[2] or change[0]} to complete the store "
                f"with the embedder that made it, or --rewrite to re-embed every profile with {change[1]}."
            )

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
        by (id, sha), positions to embed). Vectors are reusable when their set is whole (its seal
        matches), finite, and made by this embedder (the seal says; a format-1 store's manifest)."""
        records = self.store.read_records(kind)
        tokens = [t for t in tokens if t in records]
        texts = [records[t]["profile"] for t in tokens]
        shas = [text_sha(t) for t in texts]
        old = {}
        if not force and os.path.isfile(self.store.kind_file(kind, "vectors")):
            seal = self._seal(kind)
            manifest = self.store.read_manifest() if self.store.exists() else {}
            legacy = seal is None and manifest.get("format_version") == 1
            maker = seal.get("embedder") if seal is not None else manifest.get("embedder") if legacy else None
            if maker == self.embedder.identity:
                try:
                    ids, vectors, old_shas = self.store.read_vectors(kind, require_seal=not legacy)
                except ProfileStoreError as e:  # torn, or NaN rows: recomputed from the texts below
                    self.logger.warning(f"{e} Recomputing them now.")
                else:
                    if old_shas is not None:
                        old = {(i, s): v for i, s, v in zip(ids, old_shas, vectors)}
        missing = [n for n, key in enumerate(zip(tokens, shas)) if key not in old]
        return tokens, texts, shas, old, missing

    def _embed(self, kind, tokens, force):
        r"""Write vectors for ``tokens`` (dataset order), embedding only new or changed texts."""
        self.store.rewrite_records(kind, self.store.read_records(kind))  # compact the append log
        tokens, texts, shas, old, missing = self._vector_plan(kind, tokens, force)
        if not missing and len(old) == len(tokens) and self._sealed_as_now(kind):
            return 0
        fresh = {}
        if missing:
            self.logger.info(f"Embedding {len(missing)} {kind} profiles with {self.embedder.identity}")
            vectors = self.embedder.embed([texts[n] for n in missing], show_progress=self.show_progress and is_terminal())
            fresh = dict(zip(missing, vectors))
        if not tokens:
            return 0
        matrix = np.stack([fresh[n] if n in fresh else old[(t, s)] for n, (t, s) in enumerate(zip(tokens, shas))])
        self.store.write_vectors(kind, tokens, matrix, shas, embedder=self.embedder.identity)
        return len(missing)

    def _sealed_as_now(self, kind):
        r"""Whether ``kind``'s vector set is sealed by this embedder (a format-1 set is sealed once)."""
        seal = self._seal(kind)
        return seal is not None and seal.get("embedder") == self.embedder.identity

    def pending(self):
        r"""What a build would do now, doing nothing: per kind, profiles to write and vectors to
        compute; ``{}`` when the store is complete and current for this split, writer and embedder."""
        if not self.store.exists() or self.store.read_manifest().get("split_fingerprint") != split_fingerprint(self.dataset):
            return {"store": "missing or made for another training split"}
        work = {}
        for kind in KINDS:
            prompts, todo = self.plan(kind)
            tokens, _, _, old, missing = self._vector_plan(kind, list(prompts))
            if todo or missing or len(old) != len(tokens) or not self._sealed_as_now(kind):
                work[kind] = {"write": len(todo), "embed": len(missing)}
        return work

    def _write_manifest(self):
        if not all(os.path.isfile(self.store.kind_file(kind, "vectors")) for kind in KINDS):
            # Every profile of a kind failed: no usable store yet, and none is claimed (the next
            # build, or a training run, tries again).
            self.logger.warning(f"No manifest written in {self.store.path}: no {'/'.join(KINDS)} profile vectors yet")
            return
        counts, dims, sources = {}, set(), {}
        for kind in KINDS:
            ids, vectors, _ = self.store.read_vectors(kind)
            counts[kind] = len(ids)
            dims.add(int(vectors.shape[1]))
            for record in self.store.read_records(kind).values():
                sources[record["source"]] = sources.get(record["source"], 0) + 1
        manifest = {
            "format_version": FORMAT_VERSION,
            "dataset": self.settings.dataset,
            "split_fingerprint": split_fingerprint(self.dataset),
            # The writer of most profiles; ``sources`` counts every writer of a mixed store.
            "llm": max(sorted(sources), key=sources.get) if sources else self.backend.identity,
            "sources": sources,
            "embedder": self.embedder.identity,
            "dim": dims.pop() if len(dims) == 1 else sorted(dims),
            "counts": counts,
        }
        old = self.store.read_manifest() if self.store.exists() else {}
        if {k: old.get(k) for k in manifest} != manifest:
            self.store.write_manifest({**manifest, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
