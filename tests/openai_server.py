r"""A real HTTP server on 127.0.0.1 that speaks the OpenAI protocol, with scripted faults.

``/v1/chat/completions`` answers ``{"summarization", "reasoning"}`` JSON derived only from the
request's data message (the same request always gets the same answer), and ``/v1/embeddings``
returns unit vectors derived from each text. Used by tests/test_llm_profiles.py and
benchmarks/llm_throughput.py::

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
it is ignored. What the fake model answers WITHOUT a schema is ``unconstrained``: ``"json"`` (the
JSON asked for), ``"prose"`` (unparseable prose) or ``"loose"`` (what small models send: the summary
under ``Description`` with extra keys, in a code fence).

With ``echo_key=True`` error bodies repeat the key the request sent (as some servers do, masked or
not), so a client that logs or stores server errors verbatim leaks it. ``peak_in_flight`` is the
most requests the server was answering at once.

The fake model can be prompt-injected on purpose: it obeys the line "IGNORE PREVIOUS INSTRUCTIONS"
wherever it is an instruction (the system message, or a message that is not a JSON document), and
then answers plain prose. Text inside a JSON data message is only data to it.
"""

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


class OpenAIServer:
    r"""The server, its scripted faults, and a log of every request it received."""

    def __init__(self, api_key=None, latency=0.0, dim=8, retry_after="0.3", hang_seconds=5.0, echo_key=False,
                 response_format="honour", unconstrained="json"):
        assert response_format in ("honour", "reject", "ignore") and unconstrained in ("json", "prose", "loose")
        self.api_key, self.latency, self.dim, self.echo_key = api_key, latency, dim, echo_key
        self.response_format, self.unconstrained = response_format, unconstrained
        self.retry_after, self.hang_seconds = retry_after, hang_seconds
        self.faults = {"chat": deque(), "embeddings": deque()}
        self.requests = []  # dicts: endpoint, fault, time, authorized, body
        self.in_flight = self.peak_in_flight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None

    def script(self, endpoint, *faults):
        unknown = [f for f in faults if f not in FAULTS]
        assert not unknown, f"unknown faults {unknown}; known: {FAULTS}"
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
        endpoint = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings"}.get(self.path)
        if endpoint is None:
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        authorized = owner.api_key is None or self.headers.get("Authorization") == f"Bearer {owner.api_key}"
        with owner.lock:
            fault = owner.faults[endpoint].popleft() if owner.faults[endpoint] and authorized else None
            owner.requests.append({"endpoint": endpoint, "fault": fault, "time": time.time(), "authorized": authorized, "body": body})
        sent_key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        echo = f" (request key: {sent_key})" if owner.echo_key else ""
        if not authorized:
            return self._send(401, {"error": {"message": f"Incorrect API key provided{echo}.", "type": "invalid_request_error"}})
        if owner.latency:
            time.sleep(owner.latency)
        if fault == "400":
            return self._send(400, {"error": {"message": "This model's maximum context length is 2048 tokens", "type": "invalid_request_error"}})
        if fault == "429":
            return self._send(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": owner.retry_after})
        if fault == "500":
            return self._send(500, {"error": {"message": f"internal error{echo}"}})
        if fault == "hang":
            owner.stopping.wait(owner.hang_seconds)
            return self._drop()
        if fault == "drop":
            return self._drop()
        if fault == "badjson":
            return self._send_raw(200, b'{"id": "chatcmpl-1", "choices": [{"message": ')
        request = json.loads(body)
        if endpoint == "embeddings":
            return self._send(200, self._embeddings(request))
        if request.get("response_format") is not None and owner.response_format == "reject":
            return self._send(400, {"error": {"message": f"Unsupported response_format: this server has no structured outputs{echo}",
                                              "type": "invalid_request_error", "param": "response_format"}})
        return self._send(200, self._chat(request, fault))

    def _chat(self, request, fault):
        answer = fake_answer(request["messages"])
        response_format = request.get("response_format") or {}
        constrained = self.owner.response_format == "honour" and response_format.get("type") == "json_schema"
        style = "json" if constrained else self.owner.unconstrained
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
