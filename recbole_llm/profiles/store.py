r"""The profile store: one directory per dataset, the single source of profile texts and vectors.

Layout (DESIGN §3)::

    manifest.json             format version, dataset, split fingerprint, llm + embedder identity, dim, counts
    item.jsonl  user.jsonl    one JSON object per line: id, profile, reasoning, source, prompt_sha
    item.npy    user.npy      float32 [n, dim]; row r = line r of item_ids.txt / user_ids.txt
    item_ids.txt user_ids.txt raw tokens
    item_text_sha.txt ...     sha256 of the text each vector row was embedded from (re-embed only changes)
    item_failed.jsonl ...     profiles whose last generation failed: id, error, prompt_sha, source
                              (kept for ``profiles status``; a failed profile is retried by the next build)

    item_vectors.json ...     the seal of a kind's vector set, written LAST: embedder identity, row count,
                              dim and the sha256 of the .npy, ids and text-sha files it vouches for

Records are appended one line at a time and flushed at once, so a run killed at any point loses no
finished profile; a half-written last line is dropped when the store is next opened. A later record
for an id supersedes earlier ones. Each file is replaced atomically; a kind's three vector files
are replaced one after the other and then sealed, so a set torn by a kill between them no longer
matches its seal: a reader refuses it and the builder recomputes only the vectors (no LLM request).
Temporary files a killed writer left behind are removed by the next writer. The rules are
documented in docs/profiles-store.md.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re

import numpy as np

FORMAT_VERSION = 2  # 2: vector sets are sealed (<kind>_vectors.json); version 1 stores are read without seals
READABLE_VERSIONS = (1, 2)
KINDS = ("item", "user")
RECORD_FIELDS = ("id", "profile", "reasoning", "source", "prompt_sha")
FAILURE_FIELDS = ("id", "error", "prompt_sha", "source")
# Each kind's files, named <kind><suffix> (see the layout above): the one place that spells them.
KIND_FILES = {
    "records": ".jsonl", "failures": "_failed.jsonl", "vectors": ".npy", "ids": "_ids.txt", "text_sha": "_text_sha.txt",
    "seal": "_vectors.json",
}
SEALED_PARTS = ("vectors", "ids", "text_sha")
TEMPORARY = re.compile(r".+\.tmp\d+$")  # what _write_atomic writes before its rename
EMBED_COMMAND = "python -m recbole_llm.profiles embed --dataset={dataset}"
BUILD_COMMAND = "python -m recbole_llm.profiles build --dataset={dataset}"


DEFAULT_ROOT = "profiles"


def store_dir(profile_dir, dataset):
    r"""A store's directory: ``profile_dir`` if set, else ``profiles/<dataset>``."""
    return profile_dir or os.path.join(DEFAULT_ROOT, dataset)


class ProfileStoreError(ValueError):
    """The store on disk is missing or malformed; the message names the file and the fix."""


class StoreBusy(ProfileStoreError):
    """Another build, by a different writer, holds the store: refused rather than interleaved."""


def file_sha(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_atomic(path, write):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ProfileStore:
    r"""Reads and writes one profile store directory."""

    def __init__(self, path, dataset=None):
        self.path = str(path)
        self.dataset = dataset  # only for the commands error messages advise

    def command(self, template):
        return template.format(dataset=self.dataset or "<dataset>")

    def file(self, name):
        return os.path.join(self.path, name)

    def kind_file(self, kind, part):
        r"""Path of ``kind``'s (item/user) file ``part`` (a key of :data:`KIND_FILES`)."""
        return self.file(kind + KIND_FILES[part])

    def exists(self):
        return os.path.isfile(self.file("manifest.json"))

    def clear(self):
        r"""Remove the store's files (records, failures, vectors, id lists, manifest); keep the directory."""
        paths = [self.file("manifest.json")] + [self.kind_file(kind, part) for kind in KINDS for part in KIND_FILES]
        for path in paths:
            if os.path.isfile(path):
                os.remove(path)

    @contextlib.contextmanager
    def lock(self, writer=None):
        r"""Exclusive lock for writers (parallel ranks or runs building the same store).

        A second build of the same ``writer`` waits for the first (and then finds nothing left to
        do); one of a different writer is refused with :class:`StoreBusy`, never interleaved. The
        holder removes the temporary files a killed writer left."""
        os.makedirs(self.path, exist_ok=True)
        with open(self.file(".lock"), "a+", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(f)
                if writer is not None and holder.get("writer") not in (None, writer):
                    raise StoreBusy(
                        f"{self.path} is being written by another build (pid {holder.get('pid')}, writer "
                        f"{holder.get('writer')}); this one writes with {writer}. Builds of different writers on one "
                        "store are refused so that neither replaces the other's profiles: wait until that build ends "
                        "(or stop it), then run this command again."
                    ) from None
                fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            f.truncate()
            f.write(json.dumps({"pid": os.getpid(), "writer": writer}))
            f.flush()
            try:
                self._remove_temporaries()
                yield self
            finally:
                f.seek(0)
                f.truncate()
                f.flush()
                fcntl.flock(f, fcntl.LOCK_UN)

    def _remove_temporaries(self):
        for name in os.listdir(self.path):
            if TEMPORARY.fullmatch(name):
                os.remove(self.file(name))

    # -- records --------------------------------------------------------------------------------

    def read_records(self, kind):
        r"""Latest record per id, in first-seen order. A malformed last line (a killed writer) is
        cut off the file, to be regenerated; a malformed line before it is an error."""
        return self._read_log(self.kind_file(kind, "records"), _check_record)

    def read_failures(self, kind):
        r"""Latest failed attempt per id (see :meth:`append_failure`)."""
        return self._read_log(self.kind_file(kind, "failures"), _check_failure)

    @staticmethod
    def _read_log(path, check):
        records = {}
        if not os.path.isfile(path):
            return records
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        offset = 0
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            try:
                if last and not data.endswith(b"\n"):
                    raise ValueError("unterminated line")
                if line.strip():
                    record = json.loads(line)
                    check(record)
                    records[record["id"]] = record
            except ValueError as e:
                if not last:
                    raise ProfileStoreError(
                        f"{path}, line {number}: not a profile record ({e}). Fix or delete that line; "
                        "the next `python -m recbole_llm.profiles build` regenerates what is missing."
                    ) from None
                with open(path, "r+b") as f:
                    f.truncate(offset)
            offset += len(line) + 1
        return records

    def append(self, kind, record):
        _check_record(record)
        self._append(self.kind_file(kind, "records"), record)

    def append_failure(self, kind, failure):
        r"""Record a failed generation at once, so that ``profiles status`` can report it."""
        _check_failure(failure)
        self._append(self.kind_file(kind, "failures"), failure)

    def _append(self, path, record):
        os.makedirs(self.path, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()

    def rewrite_records(self, kind, records):
        r"""Compact the log to one record per id (atomic)."""
        _write_jsonl(self.kind_file(kind, "records"), records.values())

    def rewrite_failures(self, kind, failures):
        r"""Keep only ``failures`` (atomic); no file when there are none."""
        path = self.kind_file(kind, "failures")
        if failures:
            _write_jsonl(path, failures.values())
        elif os.path.isfile(path):
            os.remove(path)

    # -- vectors --------------------------------------------------------------------------------

    def read_vectors(self, kind, require_seal=True):
        r"""Return (ids, vectors [n, dim] float32, text shas), checked as training checks them: the
        three files present and sealed together (``require_seal``; stores of format 1 have no seal),
        one row per id, no id twice, no NaN or inf. A failed check raises :class:`ProfileStoreError`
        with the command that recomputes the vectors from the stored texts, without any LLM request."""
        ids_path, npy_path, sha_path = (self.kind_file(kind, part) for part in ("ids", "vectors", "text_sha"))
        reembed = f"The profile texts are kept: recompute the {kind} vectors, with no LLM request, by `{self.command(EMBED_COMMAND)}`."
        for path in (ids_path, npy_path):
            if not os.path.isfile(path):
                raise ProfileStoreError(f"{path} is missing. Build the store: {self.command(BUILD_COMMAND)}")
        seal = self.read_seal(kind)
        if seal is None and require_seal:
            raise ProfileStoreError(f"{self.kind_file(kind, 'seal')} is missing: the {kind} vector set was never completed. {reembed}")
        if seal is not None:
            torn = [self.kind_file(kind, p) for p in SEALED_PARTS
                    if not os.path.isfile(self.kind_file(kind, p)) or file_sha(self.kind_file(kind, p)) != seal["files"].get(p)]
            if torn:
                raise ProfileStoreError(
                    f"{', '.join(torn)} do(es) not match {self.kind_file(kind, 'seal')}: the {kind} vectors, ids and text "
                    f"hashes were torn apart (a build stopped while replacing them). {reembed}"
                )
        with open(ids_path, encoding="utf-8") as f:
            ids = f.read().splitlines()
        try:
            vectors = np.load(npy_path, allow_pickle=False)
        except ValueError as e:
            raise ProfileStoreError(f"{npy_path}: not a readable .npy array ({e}). {reembed}") from None
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ProfileStoreError(
                f"{npy_path}: shape {vectors.shape} does not match the {len(ids)} ids of {ids_path} (expected [n_ids, dim]). {reembed}"
            )
        if len(set(ids)) != len(ids):
            raise ProfileStoreError(f"{ids_path}: duplicate ids. {reembed}")
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            bad = [ids[r] for r in np.flatnonzero(~finite)]
            raise ProfileStoreError(f"{npy_path}: {len(bad)} {kind} rows hold NaN or inf (ids e.g. {bad[:5]}). {reembed}")
        shas = None
        if os.path.isfile(sha_path):
            with open(sha_path, encoding="utf-8") as f:
                shas = f.read().splitlines()
            if len(shas) != len(ids):
                shas = None
        return ids, vectors.astype(np.float32, copy=False), shas

    def read_seal(self, kind):
        r"""The seal of ``kind``'s vector set (embedder, count, dim, file hashes), or ``None``."""
        path = self.kind_file(kind, "seal")
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                seal = json.load(f)
            if not isinstance(seal.get("files"), dict):
                raise ValueError("no 'files'")
        except ValueError as e:
            raise ProfileStoreError(
                f"{path}: not a vector seal ({e}). Recompute the vectors by `{self.command(EMBED_COMMAND)}`."
            ) from None
        return seal

    def write_vectors(self, kind, ids, vectors, shas, embedder=None):
        r"""Replace ``kind``'s vectors, ids and text shas, then seal them (the seal is written last:
        until it is, the set reads as torn, never as whole)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        _write_atomic(self.kind_file(kind, "vectors"), lambda f: np.save(f, vectors))
        _write_atomic(self.kind_file(kind, "ids"), lambda f: f.write("".join(i + "\n" for i in ids).encode("utf-8")))
        _write_atomic(self.kind_file(kind, "text_sha"), lambda f: f.write("".join(s + "\n" for s in shas).encode()))
        seal = {
            "embedder": embedder,
            "count": len(ids),
            "dim": int(vectors.shape[1]) if vectors.ndim == 2 else None,
            "files": {part: file_sha(self.kind_file(kind, part)) for part in SEALED_PARTS},
        }
        text = json.dumps(seal, indent=2, sort_keys=True) + "\n"
        _write_atomic(self.kind_file(kind, "seal"), lambda f: f.write(text.encode("utf-8")))

    # -- manifest -------------------------------------------------------------------------------

    def read_manifest(self):
        path = self.file("manifest.json")
        if not os.path.isfile(path):
            raise ProfileStoreError(
                f"No profile store at {self.path} ({path} is missing). Build it with "
                "`python -m recbole_llm.profiles build --dataset=<dataset>` or set profile_dir."
            )
        try:
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
        except ValueError as e:
            raise ProfileStoreError(
                f"{path}: invalid JSON ({e}). The profiles are kept in the .jsonl files: `{self.command(EMBED_COMMAND)}` "
                "writes the manifest again (no LLM request)."
            ) from None
        if manifest.get("format_version") not in READABLE_VERSIONS:
            raise ProfileStoreError(
                f"{path}: format_version {manifest.get('format_version')!r}, this recbole-llm reads "
                f"{list(READABLE_VERSIONS)}. Rebuild the store with `python -m recbole_llm.profiles build --force`."
            )
        return manifest

    def write_manifest(self, manifest):
        manifest = {"format_version": FORMAT_VERSION, **manifest}
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        _write_atomic(self.file("manifest.json"), lambda f: f.write(text.encode("utf-8")))


def _lock_holder(f):
    f.seek(0)
    try:
        holder = json.loads(f.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _write_jsonl(path, records):
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    _write_atomic(path, lambda f: f.write(lines.encode("utf-8")))


def _check_failure(failure):
    if not isinstance(failure, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in FAILURE_FIELDS if k not in failure]
    if missing:
        raise ValueError(f"missing field(s) {missing}")


def _check_record(record):
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in RECORD_FIELDS if k not in record]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    if not isinstance(record["id"], str) or not isinstance(record["profile"], str):
        raise ValueError("'id' and 'profile' must be strings")
