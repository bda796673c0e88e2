r"""The ``openai-batch`` writer against a real HTTP server on 127.0.0.1 with the files and batches
endpoints (tests/openai_server.py): the round trip, partial failures retried as new batches, a
build killed with SIGKILL that resumes by the batch id in the store, cost, dry run and the key."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import tiny_config_dict
from openai_server import OpenAIServer
from recbole_llm import profiles_cli as cli
from recbole_llm.profiles.openai_api import LLMServerError
from recbole_llm.profiles.openai_batch import LEDGER, BatchLedger
from recbole_llm.profiles.store import ProfileStore, text_sha
from test_llm_profiles import KEY, KEY_ENV, N_ITEMS, N_USERS, builder, llm_config, store_snapshot


@pytest.fixture(autouse=True)
def plain_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer(api_key=KEY) as s:
        yield s


def batch_config(server, **extra):
    return llm_config(server, llm_backend="openai-batch", llm_batch_poll_seconds=0.02, **extra)


def batch_inputs(server):
    r"""Per batch, in creation order: the request lines of its input file."""
    return [[json.loads(line) for line in server.files[b["input_file_id"]].decode().splitlines()] for b in server.batches.values()]


def ledger_events(store_path):
    return [(e["event"], e.get("kind")) for e in BatchLedger(store_path).events()]


def test_a_batch_build_writes_what_the_openai_writer_would(server, tmp_path):
    b = builder(tmp_path, **batch_config(server, llm_price_input=0.075, llm_price_output=0.3))
    summary = b.build()
    assert summary["generated"] == {"item": N_ITEMS, "user": N_USERS} and summary["failed"] == {"item": 0, "user": 0}
    assert server.count("chat") == 0 and len(server.batches) == 2  # everything went through two batches
    items, users = batch_inputs(server)
    assert len(items) == N_ITEMS and len(users) == N_USERS
    prompts, _ = b.plan("item")
    assert {line["custom_id"] for line in items} == {text_sha(p) for p in prompts.values()}
    line = items[0]
    assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
    assert line["body"]["model"] == "fake-llm" and line["body"]["response_format"]["type"] == "json_schema"
    tokens = summary["tokens"]
    assert tokens["prompt"] > 0 and tokens["completion"] > 0
    assert summary["cost"] == pytest.approx((tokens["prompt"] * 0.075 + tokens["completion"] * 0.3) / 1e6, abs=1e-6)
    assert "cost: $" in cli.describe_summary(summary)
    assert ledger_events(b.store.path) == [("uploaded", "item"), ("submitted", None), ("collected", None),
                                           ("uploaded", "user"), ("submitted", None), ("collected", None)]
    listed = [r for r in server.requests if r["endpoint"] == "batches" and r["body"].startswith(b"/v1/batches?")]
    assert not listed  # a fresh build does not look for batches it cannot have made
    # The same model's profiles: the openai writer finds nothing to do, and would have written the same.
    assert builder(tmp_path, **llm_config(server)).pending() == {}
    reference = tmp_path / "reference"
    builder(tmp_path, **llm_config(server, profile_dir=str(reference))).build()
    assert store_snapshot(b.store.path) == store_snapshot(reference)


def test_failed_requests_and_unparseable_answers_go_into_a_new_batch(server, tmp_path):
    server.script("batch_request", "500", "unparseable", "500")
    server.script("batch_outcome", "completed", "expired")  # the second item batch answers only half
    b = builder(tmp_path, **batch_config(server))
    summary = b.build()
    assert summary["generated"] == {"item": N_ITEMS, "user": N_USERS} and summary["failed"] == {"item": 0, "user": 0}
    inputs = batch_inputs(server)
    first, second, third = (sorted(line["custom_id"] for line in batch) for batch in inputs[:3])
    failed = server.batch_requests[list(server.batches)[0]][:3]  # the first three lines got the faults
    assert second == sorted(failed) and len(third) == 2 and set(third) < set(failed)  # expired: 1 of 3 answered
    retry = {line["custom_id"]: line["body"] for line in inputs[1]}
    assert retry[failed[1]]["temperature"] == 0.7 and retry[failed[0]]["temperature"] == 0.0  # a parse retry samples
    assert len(inputs) == 4 and summary["retried"]["item"] == 3 + 2  # 500, unparseable, 500; two left by the expiry
    assert all(len(set(line["custom_id"] for line in batch)) == len(batch) for batch in inputs)


def test_requests_still_failing_after_the_retries_are_recorded(server, tmp_path):
    server.script("batch_request", "500", "500")
    b = builder(tmp_path, **batch_config(server, llm_max_retries=1))
    summary = b.build(limit=1)
    assert summary["failed"]["item"] == 1 and len(server.batches) == 3  # item, its retry, then the user
    failure = next(iter(ProfileStore(b.store.path).read_failures("item").values()))
    assert failure["error"] == "HTTP 500: internal error" and failure["source"] == "openai:fake-llm"


def test_a_request_the_server_will_never_answer_is_not_sent_again(server, tmp_path):
    server.script("batch_request", "400")
    summary = builder(tmp_path, **batch_config(server)).build()
    assert summary["failed"]["item"] == 1 and summary["retried"]["item"] == 0 and len(server.batches) == 2
    failure = next(iter(ProfileStore(tmp_path / "profiles").read_failures("item").values()))
    assert failure["error"] == "HTTP 400: maximum context length exceeded"


def test_a_batch_that_fails_validation_stops_the_build(server, tmp_path):
    server.script("batch_outcome", "failed")
    b = builder(tmp_path, **batch_config(server))
    with pytest.raises(LLMServerError, match="failed validation.*model not found.*llm_model"):
        b.build()
    assert ledger_events(b.store.path)[-1] == ("collected", None)  # not polled again by the next build


def test_a_kill_between_creating_the_batch_and_noting_it_does_not_submit_twice(server, tmp_path, monkeypatch):
    real_append = BatchLedger.append

    def killed_on_submitted(ledger, event):
        if event["event"] == "submitted":
            raise KeyboardInterrupt  # the batch exists on the server; the ledger does not know its id
        real_append(ledger, event)

    monkeypatch.setattr(BatchLedger, "append", killed_on_submitted)
    with pytest.raises(KeyboardInterrupt):
        builder(tmp_path, **batch_config(server)).build()
    monkeypatch.setattr(BatchLedger, "append", real_append)
    assert len(server.batches) == 1
    summary = builder(tmp_path, **batch_config(server)).build()
    assert summary["generated"] == {"item": N_ITEMS, "user": N_USERS} and len(server.batches) == 2


def test_sigkill_while_the_batch_runs_resumes_by_its_id(server, tmp_path):
    server.hold_batches = True
    overrides = batch_config(server)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **overrides)))
    ledger = tmp_path / "profiles" / LEDGER
    process = subprocess.Popen(
        [sys.executable, "-m", "recbole_llm.profiles", "build", "--dataset=tiny", f"--config_files={config_file}"],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (ledger.exists() and '"submitted"' in ledger.read_text()):
            assert process.poll() is None and time.time() < deadline, "the build ended or stalled before submitting"
            time.sleep(0.01)
        while server.count("batches") < 2:  # it polls the batch: killed while waiting for it
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert len(server.batches) == 1 and not ProfileStore(tmp_path / "profiles").read_records("item")
    server.hold_batches = False
    resumed = builder(tmp_path, **overrides).build()
    assert resumed["generated"] == {"item": N_ITEMS, "user": N_USERS}
    assert len(server.batches) == 2 and [len(b) for b in batch_inputs(server)] == [N_ITEMS, N_USERS]  # never sent twice
    assert ledger_events(tmp_path / "profiles") == [("uploaded", "item"), ("submitted", None), ("collected", None),
                                                    ("uploaded", "user"), ("submitted", None), ("collected", None)]
    written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    for path in written:
        with open(path, "rb") as f:
            assert KEY.encode() not in f.read(), path


def test_dry_run_estimates_the_cost_and_sends_nothing(server, tmp_path, monkeypatch, capsys):
    config_file = tmp_path / "tiny.yaml"
    overrides = batch_config(server, llm_price_input=0.075, llm_price_output=0.3, llm_max_tokens=100)
    config_file.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **overrides)))
    argv = ["build", "--dataset=tiny", f"--config_files={config_file}", "--dry-run"]
    monkeypatch.setattr(sys, "argv", ["recbole_llm.profiles", *argv])
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    answers = (N_ITEMS + N_USERS) * 100 * 0.3 / 1e6
    assert "llm=openai:fake-llm" in out and f"+ at most ${answers:.4f} for the answers (llm_max_tokens each)" in out
    assert "estimated cost: $0.00" in out and len(server.requests) == 0


def test_a_refused_key_stops_the_batch_build_without_revealing_it(server, tmp_path, monkeypatch):
    wrong = "sk-wrong-0123456789abcdef0123456789"
    monkeypatch.setenv(KEY_ENV, wrong)
    with pytest.raises(LLMServerError) as e:
        builder(tmp_path, **batch_config(server)).build()
    assert "HTTP 401" in str(e.value) and KEY_ENV in str(e.value) and wrong not in str(e.value)
    assert not server.files and not server.batches
