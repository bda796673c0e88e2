r"""The ``openai-batch`` profile writer: OpenAI's Batch API (half the price of the same requests sent
one by one, answered within 24 hours), or any server with its ``/v1/files`` and ``/v1/batches``.

For one kind (items, then users) it writes the chat requests as JSONL (one line per distinct prompt,
``custom_id`` = the prompt's sha256), uploads it, submits a batch, polls it every
``llm_batch_poll_seconds``, downloads the answers and errors, and yields the profiles. Requests that
failed (the error file, an expired batch's unanswered half) and answers that do not parse are sent
again in a NEW batch, up to ``llm_max_retries`` and ``llm_parse_retries`` times.

Every step is written to the store's ledger ``openai_batches.jsonl`` before the next one, so a
killed build resumes where it stopped and never pays for the same prompt twice:

- ``uploaded`` (the input file's id, kind, custom ids): written before the batch is created; a build
  that finds it without ``submitted`` looks for the batch made from that file on the server (the
  kill may have come right after the creation) and creates it only if there is none;
- ``submitted`` (the batch id): the next build polls that batch instead of sending its prompts again;
- ``collected``: its answers are in the store (or recorded as failed); it is not read again.

The writer's identity is ``openai:<model>``, the same as the ``openai`` writer's: the same model
answering the same prompt, so switching between the two keeps every profile already written.
"""

import json
import os
import time

from recbole_llm.profiles.backends import ProfileResult
from recbole_llm.profiles.llm import OpenAIBackend
from recbole_llm.profiles.openai_api import RETRYABLE_STATUS, LLMServerError, RetryPolicy, call_with_retries, redact
from recbole_llm.profiles.prompts import decode_prompt
from recbole_llm.profiles.store import text_sha as prompt_sha

LEDGER = "openai_batches.jsonl"
ENDPOINT = "/v1/chat/completions"
DONE = ("completed", "failed", "expired", "cancelled")  # terminal batch states


class BatchLedger:
    r"""The append-only log of this store's batches (see the module docstring)."""

    def __init__(self, store_path):
        self.path = os.path.join(str(store_path), LEDGER)

    def events(self):
        r"""The events in order; a half-written last line (a kill during the append) is ignored."""
        if not os.path.isfile(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        events = []
        for number, line in enumerate(lines[:-1], start=1):  # the part after the last newline is unfinished
            try:
                event = json.loads(line)
                _check_event(event)
            except ValueError as e:
                raise ValueError(f"{self.path}, line {number}: not a batch ledger event ({e}); fix or delete that line") from None
            events.append(event)
        return events

    def append(self, event):
        _check_event(event)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if os.path.isfile(self.path):
            with open(self.path, "r+b") as f:  # a kill mid-append left an unfinished line: drop it
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def open_batches(self, kind):
        r"""Batches of ``kind`` not yet collected, oldest first: dicts with file, custom_ids, batch (id or None)."""
        uploaded, submitted, collected = {}, {}, set()
        for event in self.events():
            if event["event"] == "uploaded" and event["kind"] == kind:
                uploaded[event["file"]] = event
            elif event["event"] == "submitted":
                submitted[event["file"]] = event["batch"]
            elif event["event"] == "collected":
                collected.add(event["file"])
        return [
            {"file": f, "custom_ids": e["custom_ids"], "batch": submitted.get(f)}
            for f, e in uploaded.items()
            if f not in collected
        ]


def _message(error):
    r"""The message of an error entry (``{"message": ...}`` or a bare string), or ``None``."""
    return error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None


def _check_event(event):
    if not isinstance(event, dict) or event.get("event") not in ("uploaded", "submitted", "collected") or "file" not in event:
        raise ValueError("not a batch ledger event")


class OpenAIBatchBackend(OpenAIBackend):
    r"""Profiles through the Batch API; see the module docstring."""

    name = "openai-batch"

    def __init__(self, settings):
        super().__init__(settings)
        self.identity = f"openai:{self.model}"
        self.poll_seconds = settings.llm_batch_poll_seconds
        self.ledger = BatchLedger(settings.store_dir)

    def generate(self, kind, prompts):
        client = self.client()
        policy = RetryPolicy.from_settings(self.settings)
        indexes = {}  # custom id (prompt sha) -> positions in prompts: identical prompts are sent once
        for index, prompt in enumerate(prompts):
            indexes.setdefault(prompt_sha(prompt), []).append(index)
        messages = {sha: decode_prompt(prompts[positions[0]]) for sha, positions in indexes.items()}
        work = _Work(indexes, messages)
        for batch in self.ledger.open_batches(kind):
            if not work.pending & set(batch["custom_ids"]):
                self.ledger.append({"event": "collected", "file": batch["file"]})  # its prompts changed or are done
                continue
            self.logger.info(f"Resuming {kind} batch {batch['batch'] or '(uploaded ' + batch['file'] + ')'} from {self.ledger.path}")
            yield from self._run(client, policy, kind, {**batch, "resumed": True}, work)
        while work.pending:
            yield from self._run(client, policy, kind, self._upload(client, policy, kind, work), work)

    # -- one batch, from its uploaded file to its collected answers ----------------------------

    def _run(self, client, policy, kind, batch, work):
        if batch["batch"] is None:
            batch["batch"] = self._submit(client, policy, batch["file"], look_first=batch.get("resumed", False))
        state = self._wait(client, policy, kind, batch["batch"])
        if state.status == "failed":
            errors = getattr(getattr(state, "errors", None), "data", None) or []
            detail = "; ".join(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}" for e in errors[:3]) or "no details"
            self.ledger.append({"event": "collected", "file": batch["file"]})
            raise LLMServerError(redact(
                f"batch {batch['batch']} failed validation ({detail}). Check llm_model ({self.model!r}) and llm_base_url.",
                self.settings))
        answered = {}
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                text = call_with_retries(lambda f=file_id: client.files.content(f).text, policy, self.settings, self.stats.add_retry)
                for line in text.splitlines():
                    if line.strip():
                        row = json.loads(line)
                        answered[row["custom_id"]] = row
        for custom_id in batch["custom_ids"]:
            if custom_id not in work.pending:
                continue  # done by another batch, or no longer asked for
            row = answered.get(custom_id)
            if row is None:
                yield from work.request_failed(custom_id, f"batch {batch['batch']} {state.status} before answering it", self)
            else:
                yield from self._answered(custom_id, row, work)
        self.ledger.append({"event": "collected", "file": batch["file"]})

    def _answered(self, custom_id, row, work):
        response = row.get("response") or {}
        body = response.get("body") or {}
        status = response.get("status_code")
        if status != 200:
            error = _message(body.get("error")) or _message(row.get("error")) or "no answer"
            error = redact(f"HTTP {status}: {str(error)[:200]}", self.settings)
            # A request the server will never answer (400: e.g. past the context) is not sent again.
            transient = status is None or status in RETRYABLE_STATUS or status >= 500
            yield from work.request_failed(custom_id, error, self, final=not transient)
            return
        usage = body.get("usage") or {}
        if usage:
            self.stats.add_usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        try:
            text = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            yield from work.request_failed(custom_id, "the answer has no choices[0].message.content", self)
            return
        try:
            result = self.answer(text, work.messages[custom_id])
        except ValueError as e:
            yield from work.unparseable(custom_id, text, str(e), self)
            return
        yield from work.finish(custom_id, result)

    def _upload(self, client, policy, kind, work):
        custom_ids = sorted(work.pending)
        lines = [
            json.dumps({"custom_id": c, "method": "POST", "url": ENDPOINT, "body": self.request_body(work.messages[c], work.parse_tries[c])},
                       ensure_ascii=False)
            for c in custom_ids
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        uploaded = call_with_retries(lambda: client.files.create(file=(f"{kind}-profiles.jsonl", data), purpose="batch"),
                                     policy, self.settings, self.stats.add_retry)
        self.ledger.append({"event": "uploaded", "file": uploaded.id, "kind": kind, "custom_ids": custom_ids})
        self.logger.info(f"Uploaded {len(custom_ids)} {kind} requests as {uploaded.id} ({len(data):,} bytes)")
        return {"file": uploaded.id, "custom_ids": custom_ids, "batch": None}

    def _submit(self, client, policy, file_id, look_first):
        r"""The batch made from ``file_id``: with ``look_first`` (a resumed build: the last one may have
        been killed right after creating it) the one already on the server if any, else a new one."""
        existing = look_first and call_with_retries(
            lambda: next((b.id for b in client.batches.list(limit=100) if b.input_file_id == file_id), None),
            policy, self.settings, self.stats.add_retry)
        batch_id = existing or call_with_retries(
            lambda: client.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h").id,
            policy, self.settings, self.stats.add_retry)
        self.ledger.append({"event": "submitted", "file": file_id, "batch": batch_id})
        self.logger.info(f"{'Found' if existing else 'Submitted'} batch {batch_id} for {file_id}")
        return batch_id

    def _wait(self, client, policy, kind, batch_id):
        last = None
        while True:
            state = call_with_retries(lambda: client.batches.retrieve(batch_id), policy, self.settings, self.stats.add_retry)
            counts = state.request_counts
            progress = (state.status, getattr(counts, "completed", None), getattr(counts, "failed", None))
            if progress != last:
                self.logger.info(f"{kind} batch {batch_id}: {state.status}"
                                 + (f", {counts.completed}/{counts.total} done, {counts.failed} failed" if counts else ""))
                last = progress
            if state.status in DONE:
                return state
            if policy.stop.wait(self.poll_seconds):
                raise LLMServerError("stopped while waiting for a batch")

    def request_body(self, messages, parse_tries):
        body = {"model": self.model, "messages": messages}
        if self.response_format is not None:
            body["response_format"] = self.response_format
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        temperature = self.temperature_for(parse_tries)
        if temperature is not None:
            body["temperature"] = temperature
        return body


class _Work:
    r"""The prompts of one ``generate`` call not answered yet, and their tries so far."""

    def __init__(self, indexes, messages):
        self.indexes, self.messages = indexes, messages
        self.pending = set(indexes)
        self.parse_tries = {c: 0 for c in indexes}
        self.request_tries = {c: 0 for c in indexes}

    def finish(self, custom_id, result):
        self.pending.discard(custom_id)
        for index in self.indexes[custom_id]:
            yield index, result

    def request_failed(self, custom_id, error, backend, final=False):
        self.request_tries[custom_id] += 1
        if final or self.request_tries[custom_id] > backend.settings.llm_max_retries:
            yield from self.finish(custom_id, ProfileResult(profile=None, error=error))
        else:
            backend.stats.add_retry()

    def unparseable(self, custom_id, text, problem, backend):
        self.parse_tries[custom_id] += 1
        if self.parse_tries[custom_id] > backend.parse_retries:
            yield from self.finish(custom_id, backend.unparsed(text, problem))
        else:
            backend.stats.add_retry()
