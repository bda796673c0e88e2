r"""A real HTTP server on 127.0.0.1 that speaks the OpenAI protocol, with scripted faults.

``/v1/chat/completions`` answers ``{"summarization", "reasoning"}`` JSON derived only from the
request's data message (the same request always gets the same answer), and ``/v1/embeddings``
returns unit vectors derived from each text. ``/v1/files`` (multipart upload, ``GET .../content``)
and ``/v1/batches`` (create, retrieve, list) run OpenAI's Batch API: a batch answers its JSONL
requests with the same fake model, ``batch_seconds`` after its creation or once ``hold_batches`` is
released. Used by tests/test_llm_profiles.py, tests/test_llm_answers.py, tests/test_openai_batch.py
and benchmarks/llm_throughput.py::

    with OpenAIServer(api_key="sk-test", latency=0.2) as server:
        server.script("chat", "429", "500", "hang", "drop", "badjson", "unparseable", "fenced")
        ... llm_base_url = server.url ...

Faults are consumed in the order requests arrive, one per request of that endpoint:

- ``400``: Bad Request (a request the server will never answer, e.g. a prompt past its context);
- ``429``: Too Many Requests with ``Retry-After: <retry_after>``;  ``500``: Internal Server Error;
- ``hang``: no answer for ``hang_seconds`` (past the client's timeout), then nothing;
- ``drop``: the connection is closed without a response;
- ``badjson``: 200 with a body that is not JSON;
- ``unparseable``: a well-formed response whose answer is prose, not the JSON asked for;
- ``fenced``: the answer JSON inside a code fence, followed by chatter.

Structured output (``response_format``): with ``response_format="honour"`` (the default) a request
that carries a JSON schema gets exactly the schema's JSON; with ``"reject"`` any request carrying a
``response_format`` gets HTTP 400 (as servers without structured outputs answer); with ``"ignore"``
it is ignored (as ``transformers serve`` does); with ``"llama-cpp-python"`` a ``json_schema`` request
gets the HTTP 500 that llama-cpp-python's server (0.3.x) answers it with, and the schema inside JSON
mode (``{"type": "json_object", "schema": ...}``) is honoured. What the fake model answers WITHOUT a schema is ``unconstrained``: ``"json"`` (the
JSON asked for), ``"prose"`` (unparseable prose) or ``"loose"`` (what small models send: the summary
under ``Description`` with extra keys, in a code fence).

With ``echo_key=True`` error bodies repeat the key the request sent (as some servers do, masked or
not), so a client that logs or stores server errors verbatim leaks it; ``echo_offset`` puts that
many characters of text before it (a key across a client's cut of long messages). ``peak_in_flight`` is the
most requests the server was answering at once.

The fake model can be prompt-injected on purpose: it obeys the line "IGNORE PREVIOUS INSTRUCTIONS"
wherever it is an instruction (the system message, or a message that is not a JSON document), and
then answers plain prose. Text inside a JSON data message is only data to it.
"""

import email.parser
import email.policy
import hashlib
import json
import math
import random
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INJECTION = "IGNORE PREVIOUS INSTRUCTIONS"
FAULTS = ("400", "429", "500", "hang", "drop", "badjson", "unparseable", "fenced")
# What llama-cpp-python's server (0.3.36) answers a json_schema response_format with, as HTTP 500.
LLAMA_CPP_PYTHON_REFUSAL = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                            "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}")
BATCH_FAULTS = ("completed", "expired", "failed")  # what a whole batch can end as, besides completed


def fake_answer(messages):
    r"""(summarization, reasoning) of the fake model, from the data message only."""
    instructions, data = "", None
    for message in messages:
        content = message.get("content") or ""
        if message.get("role") == "system":
            instructions += content
            continue
        try:
            data = json.loads(content)
        except ValueError:
            instructions += content
    if INJECTION.lower() in instructions.lower():
        return None
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    if isinstance(data, dict) and "interactions" in data:
        titles = ", ".join(i["title"] for i in data["interactions"][:3])
        return f"Enjoys films like {titles} [{digest}].", f"From {len(data['interactions'])} interactions."
    if isinstance(data, dict) and "title" in data:
        return f"Viewers who enjoy {data['title']} [{digest}].", "From the title and categories."
    return f"Someone [{digest}].", None


def fake_vector(text, dim):
    rng = random.Random(hashlib.sha256(text.encode("utf-8")).hexdigest())
    vector = [rng.gauss(0, 1) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def chat_completion(owner, request, fault):
    r"""The fake model's chat completion for ``request`` (a parsed body), as ``owner`` is set up."""
    answer = fake_answer(request["messages"])
    response_format = request.get("response_format") or {}
    constrained = (owner.response_format == "honour" and response_format.get("type") == "json_schema") or (
        owner.response_format == "llama-cpp-python" and response_format.get("type") == "json_object" and "schema" in response_format)
    style = "json" if constrained else owner.unconstrained
    if answer is None or fault == "unparseable" or style == "prose":
        content = "Sure! This item is great for everyone who likes good things."
        if constrained and fault != "unparseable":  # a schema-constrained model answers the schema's JSON
            content = json.dumps({"summarization": content, "reasoning": ""})
    elif style == "loose":
        loose = {"Description": answer[0], "genres": ["Drama"], "explanation": answer[1]}
        content = f"```json\n{json.dumps(loose, indent=2)}\n```"
    else:
        content = json.dumps({"summarization": answer[0], "reasoning": answer[1]})
        if fault == "fenced":
            content = f"Here you go:\n```json\n{content}\n```\nLet me know if you need more."
    prompt_chars = sum(len(m.get("content") or "") for m in request["messages"])
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": len(content) // 4,
            "total_tokens": prompt_chars // 4 + len(content) // 4,
        },
    }


class OpenAIServer:
    r"""The server, its scripted faults, and a log of every request it received."""

    def __init__(self, api_key=None, latency=0.0, dim=8, retry_after="0.3", hang_seconds=5.0, echo_key=False, echo_offset=0,
                 response_format="honour", unconstrained="json"):
        assert response_format in ("honour", "reject", "ignore", "llama-cpp-python") and unconstrained in ("json", "prose", "loose")
        self.api_key, self.latency, self.dim, self.echo_key, self.echo_offset = api_key, latency, dim, echo_key, echo_offset
        self.response_format, self.unconstrained = response_format, unconstrained
        self.retry_after, self.hang_seconds = retry_after, hang_seconds
        self.faults = {"chat": deque(), "embeddings": deque(), "files": deque(), "batches": deque(),
                       "batch_request": deque(), "batch_outcome": deque()}
        self.files = {}  # id -> bytes
        self.batches = {}  # id -> state (see batch_state); insertion order = creation order
        self.batch_requests = {}  # batch id -> the custom_ids of its input file, as processed
        self.hold_batches = False  # True: batches stay in_progress until set back
        self.batch_seconds = 0.0  # a batch completes this long after its creation
        self.requests = []  # dicts: endpoint, fault, time, authorized, body
        self.in_flight = self.peak_in_flight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None

    def script(self, endpoint, *faults):
        r"""Faults of the next requests of ``endpoint`` (chat, embeddings, files, batches: HTTP faults),
        of the next requests inside batches (``batch_request``: 400, 500, unparseable, fenced), or of how the
        next batches end (``batch_outcome``: expired, after half its requests; failed, validation)."""
        known = BATCH_FAULTS if endpoint == "batch_outcome" else FAULTS
        unknown = [f for f in faults if f not in known]
        assert not unknown, f"unknown faults {unknown}; known: {known}"
        with self.lock:
            self.faults[endpoint].extend(faults)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def count(self, endpoint=None, fault="any"):
        with self.lock:
            return sum(
                1 for r in self.requests if (endpoint is None or r["endpoint"] == endpoint) and (fault == "any" or r["fault"] == fault)
            )

    def add_file(self, content):
        with self.lock:
            file_id = f"file-{len(self.files) + 1:04d}"
            self.files[file_id] = content
        return file_id

    def batch_state(self, batch_id):
        r"""The batch's JSON, advancing it (under ``self.lock``): in_progress while held or younger than
        ``batch_seconds``, then processed in one go (its requests' faults in order)."""
        batch = self.batches[batch_id]
        due = not self.hold_batches and time.time() - batch["created_at"] >= self.batch_seconds
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "in_progress"
            if due:
                self._process(batch)
        counts = batch["counts"]
        return {
            "id": batch_id, "object": "batch", "endpoint": batch["endpoint"], "input_file_id": batch["input_file_id"],
            "completion_window": "24h", "status": batch["status"], "created_at": int(batch["created_at"]),
            "output_file_id": batch["output_file_id"], "error_file_id": batch["error_file_id"],
            "errors": batch.get("errors"), "request_counts": dict(counts),
        }

    def _process(self, batch):
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].decode().splitlines() if line.strip()]
        outcome = self.faults["batch_outcome"].popleft() if self.faults["batch_outcome"] else "completed"
        self.batch_requests[batch["id"]] = [line["custom_id"] for line in lines]
        batch["counts"]["total"] = len(lines)
        if outcome == "failed":
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "model not found", "line": 1}]}
            return
        if outcome == "expired":
            lines = lines[: len(lines) // 2]
        output, errors = [], []
        for n, line in enumerate(lines):
            fault = self.faults["batch_request"].popleft() if self.faults["batch_request"] else None
            if fault in ("400", "500"):
                message = "internal error" if fault == "500" else "maximum context length exceeded"
                response = {"status_code": int(fault), "request_id": f"req_{n}", "body": {"error": {"message": message}}}
                errors.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"], "response": response, "error": None})
                continue
            response = {"status_code": 200, "request_id": f"req_{n}", "body": chat_completion(self, line["body"], fault)}
            output.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"], "response": response, "error": None})
        batch["counts"].update(completed=len(output), failed=len(errors))
        for key, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{len(self.files) + 1:04d}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[key] = file_id
        batch["status"] = outcome

    def start(self):
        server = self

        class Handler(OpenAIHandler):
            owner = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="openai-server").start()
        return self

    def stop(self):
        self.stopping.set()  # wakes hanging handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class OpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    owner = None

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        # Without it, Nagle's algorithm meets the client's delayed ACKs: ~40 ms stalls per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        owner = self.owner
        with owner.lock:
            owner.in_flight += 1
            owner.peak_in_flight = max(owner.peak_in_flight, owner.in_flight)
        try:
            self._answer()
        finally:
            with owner.lock:
                owner.in_flight -= 1

    def _answer(self):
        owner = self.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        endpoint = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings", "/v1/files": "files",
                    "/v1/batches": "batches"}.get(self.path)
        if endpoint is None:
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        authorized = owner.api_key is None or self.headers.get("Authorization") == f"Bearer {owner.api_key}"
        with owner.lock:
            fault = owner.faults[endpoint].popleft() if owner.faults[endpoint] and authorized else None
            owner.requests.append({"endpoint": endpoint, "fault": fault, "time": time.time(), "authorized": authorized, "body": body})
        sent_key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        echo = f" (request key: {sent_key})" if owner.echo_key else ""
        internal = f"internal error{echo}"
        if owner.echo_key and owner.echo_offset:  # the key starts at character echo_offset of the message
            internal = f"{'x' * owner.echo_offset}{sent_key} is the request key"
        if not authorized:
            return self._send(401, {"error": {"message": f"Incorrect API key provided{echo}.", "type": "invalid_request_error"}})
        if owner.latency:
            time.sleep(owner.latency)
        if fault == "400":
            return self._send(400, {"error": {"message": "This model's maximum context length is 2048 tokens", "type": "invalid_request_error"}})
        if fault == "429":
            return self._send(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": owner.retry_after})
        if fault == "500":
            return self._send(500, {"error": {"message": internal}})
        if fault == "hang":
            owner.stopping.wait(owner.hang_seconds)
            return self._drop()
        if fault == "drop":
            return self._drop()
        if fault == "badjson":
            return self._send_raw(200, b'{"id": "chatcmpl-1", "choices": [{"message": ')
        if endpoint == "files":
            return self._upload(body)
        request = json.loads(body)
        if endpoint == "batches":
            return self._create_batch(request)
        if endpoint == "embeddings":
            return self._send(200, self._embeddings(request))
        if request.get("response_format") is not None and owner.response_format == "reject":
            return self._send(400, {"error": {"message": f"Unsupported response_format: this server has no structured outputs{echo}",
                                              "type": "invalid_request_error", "param": "response_format"}})
        if (request.get("response_format") or {}).get("type") == "json_schema" and owner.response_format == "llama-cpp-python":
            return self._send(500, {"error": {"message": LLAMA_CPP_PYTHON_REFUSAL, "type": "internal_server_error"}})
        return self._send(200, chat_completion(owner, request, fault))

    def do_GET(self):
        owner = self.owner
        authorized = owner.api_key is None or self.headers.get("Authorization") == f"Bearer {owner.api_key}"
        endpoint = "files" if self.path.startswith("/v1/files/") else "batches"
        with owner.lock:
            owner.requests.append({"endpoint": endpoint, "fault": None, "time": time.time(), "authorized": authorized,
                                   "body": self.path.encode()})
        if not authorized:
            return self._send(401, {"error": {"message": "Incorrect API key provided."}})
        if self.path.startswith("/v1/files/") and self.path.endswith("/content"):
            content = owner.files.get(self.path.split("/")[3])
            return self._send_raw(200, content) if content is not None else self._send(404, {"error": {"message": "no such file"}})
        if self.path.split("?")[0] == "/v1/batches":
            with owner.lock:
                batches = [owner.batch_state(b) for b in reversed(list(owner.batches))]
            return self._send(200, {"object": "list", "data": batches, "has_more": False})
        if self.path.startswith("/v1/batches/"):
            batch_id = self.path.split("/")[3]
            if batch_id not in owner.batches:
                return self._send(404, {"error": {"message": f"no batch {batch_id}"}})
            with owner.lock:
                return self._send(200, owner.batch_state(batch_id))
        return self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _upload(self, body):
        r"""POST /v1/files: the multipart form's ``file`` part becomes a file."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        content = parts["file"].get_payload(decode=True)
        file_id = self.owner.add_file(content)
        return self._send(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                                "filename": parts["file"].get_filename(), "purpose": "batch", "status": "processed"})

    def _create_batch(self, request):
        owner = self.owner
        if request["input_file_id"] not in owner.files:
            return self._send(404, {"error": {"message": f"no file {request['input_file_id']}"}})
        with owner.lock:
            batch_id = f"batch_{len(owner.batches) + 1:04d}"
            owner.batches[batch_id] = {"id": batch_id, "input_file_id": request["input_file_id"], "created_at": time.time(),
                                       "endpoint": request["endpoint"], "status": "validating", "output_file_id": None,
                                       "error_file_id": None, "counts": {"total": 0, "completed": 0, "failed": 0}}
            return self._send(200, owner.batch_state(batch_id))

    def _embeddings(self, request):
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, self.owner.dim)} for i, t in enumerate(texts)]
        tokens = sum(len(t) for t in texts) // 4
        return {"object": "list", "data": data, "model": request["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def _send(self, status, payload, headers=None):
        self._send_raw(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_raw(self, status, body, headers=None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout, killed process)
            self.close_connection = True

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
