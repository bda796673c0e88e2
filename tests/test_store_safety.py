r"""Issue 16, "nothing lost, nothing leaked": each test reproduces one way the profile store lost
paid work, leaked a key or checked too late, and fails on the code before the fix.

Real processes (``python -m recbole_llm.profiles``, ``run_recbole_llm.py``), a real local server
speaking the OpenAI protocol (tests/openai_server.py), and real ``kill -9``s: tests/pause_at.py
stops a build at a chosen rename so that the kill lands exactly there. The runs of several
processes are marked slow; each has a fast in-process counterpart in the default suite.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from recbole.data import data_preparation
from recbole.utils import init_seed

from conftest import FIXTURES, REPO, tiny_config_dict, tiny_data
from openai_server import OpenAIServer
from recbole_llm import Config
from recbole_llm import profiles_cli as cli
from recbole_llm.build import profile_settings
from recbole_llm.data.atomic import DatasetFileError, create_dataset
from recbole_llm.data.loader import profile_tensors
from recbole_llm.profiles.builder import IdsOnlyError, ProfileBuilder
from recbole_llm.profiles.openai_api import LLMServerError, describe_error
from recbole_llm.profiles.settings import ProfileSettings
from recbole_llm.profiles.store import ProfileStore, ProfileStoreError

KEY_ENV = "RLM_TEST_API_KEY"
KEY = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
N_ITEMS, N_USERS = 40, 30
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def plain_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # RecBole's Config reads sys.argv


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer(api_key=KEY) as s:
        yield s


def llm_config(server, **extra):
    return {
        "llm_backend": "openai", "llm_model": "fake-llm", "llm_base_url": server.url, "llm_api_key_env": KEY_ENV,
        "embedder": "openai:fake-embed", "llm_timeout": 2, "llm_backoff_base": 0.02, "llm_concurrency": 4, **extra,
    }


def config_file(tmp_path, name, **overrides):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **overrides)))
    return path


def environment(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", KEY_ENV: KEY, **extra}


def profiles_command(tmp_path, config, *args, timeout=300):
    r"""``python -m recbole_llm.profiles ARGS --dataset=tiny --config_files=CONFIG``, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "recbole_llm.profiles", *args, "--dataset=tiny", f"--config_files={config}"],
        capture_output=True, text=True, cwd=tmp_path, env=environment(), timeout=timeout, stdin=subprocess.DEVNULL,
    )


def paused_build(tmp_path, config, name, *args):
    r"""A build process stopped before its store's rename onto ``name`` (see tests/pause_at.py)."""
    marker, log = tmp_path / f"paused-at-{name}", tmp_path / f"paused-at-{name}.log"
    process = subprocess.Popen(
        [sys.executable, os.path.join(TESTS, "pause_at.py"), str(marker), name, "--",
         "build", "--dataset=tiny", f"--config_files={config}", *args],
        cwd=tmp_path, env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
    )
    deadline = time.time() + 300  # a hang guard only
    while not marker.exists():
        assert process.poll() is None, f"the build ended (rc {process.returncode}) before {name}: {log.read_text()[-2000:]}"
        assert time.time() < deadline, "the build never reached the pause"
        time.sleep(0.05)
    return process


def kill9(process):
    process.send_signal(signal.SIGKILL)
    process.wait()


def train_split(tmp_path, **overrides):
    r"""Config and training split of the tiny dataset, WITHOUT preparing the store (a reader's view)."""
    config = Config(model="LightGCN_RLM", dataset="tiny", config_dict=tiny_config_dict(tmp_path, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, train._dataset


def llm_build(tmp_path, server, **overrides):
    r"""The openai writer's complete store, built in this process."""
    config, dataset = train_split(tmp_path, **llm_config(server, **overrides))
    summary = ProfileBuilder(profile_settings(config), dataset, show_progress=False).build()
    assert summary["generated"] == {"item": N_ITEMS, "user": N_USERS}
    return ProfileStore(config["profile_dir"])


def records(store):
    return {kind: store.read_records(kind) for kind in ("item", "user")}


def snapshot(path):
    store = ProfileStore(path)
    result = {"manifest": {k: v for k, v in store.read_manifest().items() if k != "updated"}, **records(store)}
    for kind in ("item", "user"):
        ids, vectors, _ = store.read_vectors(kind)
        result[f"{kind}_vectors"] = {i: v.tolist() for i, v in zip(ids, vectors)}
    return result


def summary_of(stdout):
    line = next(line for line in stdout.splitlines() if line.startswith("profile store "))
    return json.loads(line.split(": ", 1)[1])


def leaks(text, key=KEY, width=8):
    r"""Any 8 consecutive characters of ``key`` in ``text`` (a cut key leaks its visible part)."""
    return any(key[i : i + width] in text for i in range(len(key) - width + 1))


def files_under(root):
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                yield os.path.join(folder, name), f.read().decode("utf-8", "replace")


# -- 1: paid profiles are never replaced without being told ------------------------------------


@pytest.mark.slow  # several processes: ~30-60 s
def test_a_build_by_another_writer_keeps_paid_profiles_and_only_completes(server, tmp_path):
    store = llm_build(tmp_path, server)
    written = records(store)
    # The same store, the template writer (no --llm flags), then another model: nothing replaced.
    template = config_file(tmp_path, "template.yaml", **llm_config(server, llm_backend="template"))
    other = config_file(tmp_path, "other.yaml", **llm_config(server, llm_model="other-llm"))
    chat_before = server.count("chat")
    for config in (template, other):
        out = profiles_command(tmp_path, config, "build")
        assert out.returncode == 0, out.stderr[-2000:]
        assert summary_of(out.stdout)["kept"] == {"item": N_ITEMS, "user": N_USERS}
        assert records(store) == written
    assert server.count("chat") == chat_before
    status = profiles_command(tmp_path, template, "status")
    assert status.returncode == 0, status.stdout
    assert f"item: {N_ITEMS}/{N_ITEMS} done ({N_ITEMS} of them kept" in status.stdout and "--rewrite replaces them" in status.stdout
    # Two profiles lost some other way: another writer completes just those, and keeps the rest.
    items = store.read_records("item")
    lost = list(items)[:2]
    store.rewrite_records("item", {t: r for t, r in items.items() if t not in lost})
    out = profiles_command(tmp_path, template, "build")
    assert out.returncode == 0, out.stderr[-2000:]
    after = store.read_records("item")
    assert {t: r for t, r in after.items() if t not in lost} == {t: r for t, r in written["item"].items() if t not in lost}
    assert [after[t]["source"] for t in lost] == ["template", "template"]
    assert store.read_records("user") == written["user"]


@pytest.mark.slow  # several processes: ~30-60 s
def test_an_imported_store_is_kept_and_reported_as_kept(server, tmp_path):
    store = llm_build(tmp_path, server)
    imported = {
        kind: {t: {**r, "source": "rlmrec-import", "prompt_sha": None} for t, r in store.read_records(kind).items()}
        for kind in ("item", "user")
    }
    for kind, kind_records in imported.items():
        store.rewrite_records(kind, kind_records)
    template = config_file(tmp_path, "template.yaml", **llm_config(server, llm_backend="template"))
    status = profiles_command(tmp_path, template, "status")
    assert "0 stale" in status.stdout and f"{N_USERS} of them kept" in status.stdout and "by rlmrec-import" in status.stdout
    out = profiles_command(tmp_path, template, "build")
    assert out.returncode == 0, out.stderr[-2000:]
    assert records(store) == imported  # not "Item 0." ...


@pytest.mark.slow  # several processes: ~30-60 s
def test_rewrite_says_what_it_replaces_and_asks_on_a_terminal(server, tmp_path):
    store = llm_build(tmp_path, server)
    written = records(store)
    other = config_file(tmp_path, "other.yaml", **llm_config(server, llm_model="other-llm"))
    command = [sys.executable, "-m", "recbole_llm.profiles", "build", "--rewrite", "--dataset=tiny", f"--config_files={other}"]
    chat_before = server.count("chat")
    terminal, terminal_side = os.openpty()
    try:
        os.write(terminal, b"n\n")  # the user's answer, typed on the terminal
        out = subprocess.run(command, stdin=terminal_side, capture_output=True, text=True, cwd=tmp_path, env=environment(), timeout=300)
    finally:
        os.close(terminal)
        os.close(terminal_side)
    assert out.returncode == 1, out.stderr[-2000:]
    assert (
        f"--rewrite replaces {N_ITEMS} item profiles ({N_ITEMS} by openai:fake-llm) and {N_USERS} user profiles "
        f"({N_USERS} by openai:fake-llm) with profiles written by openai:other-llm: {N_ITEMS + N_USERS} requests to openai:other-llm"
    ) in out.stdout
    assert "Replace them? [y/N]" in out.stdout and "not confirmed" in out.stderr
    assert records(store) == written and server.count("chat") == chat_before
    # Not on a terminal (a script): the flag itself is the consent; the count is still printed first.
    out = profiles_command(tmp_path, other, "build", "--rewrite")
    assert out.returncode == 0 and "--rewrite replaces" in out.stdout, out.stderr[-2000:]
    assert summary_of(out.stdout)["generated"] == {"item": N_ITEMS, "user": N_USERS}
    assert {r["source"] for kind in records(store).values() for r in kind.values()} == {"openai:other-llm"}


@pytest.mark.slow  # several processes: ~30-60 s
def test_builds_of_different_writers_on_one_store_are_refused(server, tmp_path):
    # Slow answers keep the openai build writing for minutes: the template build's own start-up
    # (seconds, more on a loaded machine) must not outlast it. It is killed once refused.
    server.latency = 3.0
    paid = config_file(tmp_path, "paid.yaml", **llm_config(server, llm_concurrency=1, llm_timeout=30))
    template = config_file(tmp_path, "template.yaml", **llm_config(server, llm_backend="template"))
    items = tmp_path / "profiles" / "item.jsonl"
    running = subprocess.Popen(
        [sys.executable, "-m", "recbole_llm.profiles", "build", "--dataset=tiny", f"--config_files={paid}"],
        cwd=tmp_path, env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 300
        while not (items.exists() and items.read_text().count("\n") >= 2):
            assert running.poll() is None and time.time() < deadline, "the openai build ended or stalled"
            time.sleep(0.05)
        out = profiles_command(tmp_path, template, "build")
        assert running.poll() is None  # the refusal came while the other build was writing
    finally:
        kill9(running)
    assert out.returncode == 2 and "being written by another build" in out.stderr and "openai:fake-llm" in out.stderr, out.stderr[-2000:]
    assert {r["source"] for r in ProfileStore(tmp_path / "profiles").read_records("item").values()} == {"openai:fake-llm"}


def test_in_process_another_writer_keeps_and_rewrite_replaces(server, tmp_path):
    store = llm_build(tmp_path, server)
    written = records(store)
    config, dataset = train_split(tmp_path, **llm_config(server, llm_backend="template"))
    template = ProfileBuilder(profile_settings(config), dataset, show_progress=False)
    summary = template.build()
    assert summary["generated"] == {"item": 0, "user": 0} and summary["kept"] == {"item": N_ITEMS, "user": N_USERS}
    assert records(store) == written and store.read_manifest()["llm"] == "openai:fake-llm"
    report = template.replacements(rewrite=True)
    assert report["kinds"]["item"] == {"replaced": N_ITEMS, "by_writer": {"openai:fake-llm": N_ITEMS}} and report["requests"] == 0
    assert template.build(rewrite=True)["generated"] == {"item": N_ITEMS, "user": N_USERS}
    assert {r["source"] for kind in records(store).values() for r in kind.values()} == {"template"}


def test_in_process_another_embedder_is_refused_not_switched(server, tmp_path):
    store = llm_build(tmp_path, server)
    before = store.read_vectors("item")[1].copy()
    config, dataset = train_split(tmp_path, **llm_config(server, embedder="openai:other-embed"))
    with pytest.raises(ProfileStoreError, match=r"made by openai:fake-embed.*--embedder=fake-embed.*--rewrite"):
        ProfileBuilder(profile_settings(config), dataset, show_progress=False).build()
    assert np.array_equal(store.read_vectors("item")[1], before)


# -- 2, 3: secrets ------------------------------------------------------------------------------


def test_a_key_across_the_cut_of_an_error_message_is_masked(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)

    class ServerError(Exception):
        status_code = 500
        body = {"message": "x" * 172 + KEY + " was sent"}

    text = describe_error(ServerError(), ProfileSettings(dataset="tiny", data_path=".", llm_api_key_env=KEY_ENV))
    assert text.startswith("HTTP 500: xxx") and not leaks(text)


@pytest.mark.slow  # several processes: ~30-60 s
def test_a_key_echoed_across_the_cut_never_reaches_files_logs_or_status(server, tmp_path):
    server.echo_key, server.echo_offset = True, 172
    server.script("chat", "500", "500")
    config = config_file(tmp_path, "tiny.yaml", **llm_config(server, llm_max_retries=1, llm_concurrency=1, state="INFO"))
    out = profiles_command(tmp_path, config, "build")
    assert out.returncode == 1, out.stderr[-2000:]  # one profile failed, with the key in the server's message
    status = profiles_command(tmp_path, config, "status")
    (failure,) = ProfileStore(tmp_path / "profiles").read_failures("item").values()
    assert "xxx***" in failure["error"] or failure["error"].endswith("...")
    for path, text in files_under(tmp_path):
        assert not leaks(text), path
    for text in (out.stdout, out.stderr, status.stdout, status.stderr):
        assert not leaks(text)


def test_a_key_under_another_config_name_is_refused_before_anything_is_written(tmp_path):
    config = config_file(tmp_path, "tiny.yaml", state="INFO")
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "run_recbole_llm.py"), "--model=LightGCN_RLM", "--dataset=tiny",
         f"--config_files={config}", f"--openai_api_key={KEY}"],
        capture_output=True, text=True, cwd=tmp_path, env=environment(OPENAI_API_KEY=KEY), timeout=300,
    )
    assert out.returncode != 0 and "openai_api_key" in out.stderr and "hold the API key" in out.stderr
    assert not leaks(out.stdout + out.stderr)
    for path, text in files_under(tmp_path):
        assert not leaks(text), path
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in ("saved", "profiles"))


# -- 4, 9, 11: vectors torn by a kill; status checks what training checks ----------------------


@pytest.mark.slow  # several processes: ~30-60 s
def test_a_kill_between_vectors_and_ids_is_detected_and_re_embedded_without_llm_requests(server, tmp_path):
    config = config_file(tmp_path, "tiny.yaml", **llm_config(server))
    first = profiles_command(tmp_path, config, "build", "--limit", "20")
    assert first.returncode == 0, first.stderr[-2000:]
    # The completing build is killed after replacing item.npy (40 rows), before item_ids.txt (20 ids).
    kill9(paused_build(tmp_path, config, "item_ids.txt"))
    chat_after_kill = server.count("chat")
    run_config, dataset = train_split(tmp_path, **llm_config(server), profile_missing="zero")  # 10 users are not written yet
    with pytest.raises(ProfileStoreError) as refused:
        profile_tensors(run_config, dataset)
    message = str(refused.value)
    assert "torn" in message and "python -m recbole_llm.profiles embed --dataset=tiny" in message and "--force" not in message
    status = profiles_command(tmp_path, config, "status")
    assert status.returncode == 1 and "training would refuse this store" in status.stdout and "profiles embed" in status.stdout
    embedded = profiles_command(tmp_path, config, "embed")
    assert embedded.returncode == 0, embedded.stderr[-2000:]
    assert server.count("chat") == chat_after_kill  # vectors only: not one profile requested
    store = ProfileStore(tmp_path / "profiles")
    ids, vectors, _ = store.read_vectors("item")  # whole again: one row per stored text
    assert sorted(ids) == sorted(store.read_records("item")) and len(ids) == N_ITEMS and np.isfinite(vectors).all()


@pytest.mark.slow  # several processes: ~30-60 s
def test_a_resume_after_a_kill_re_embeds_nothing_finished_and_removes_temporary_files(server, tmp_path):
    config = config_file(tmp_path, "tiny.yaml", **llm_config(server))
    # Killed with every profile written and the item vectors sealed, while renaming user.npy: no manifest yet.
    kill9(paused_build(tmp_path, config, "user.npy"))
    store = ProfileStore(tmp_path / "profiles")
    assert not store.exists() and [n for n in os.listdir(store.path) if ".tmp" in n]
    resumed = profiles_command(tmp_path, config, "build")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = summary_of(resumed.stdout)
    assert summary["generated"] == {"item": 0, "user": 0} and summary["embedded"] == {"item": 0, "user": N_USERS}
    assert not [n for n in os.listdir(store.path) if ".tmp" in n]
    reference = tmp_path / "reference"
    config, dataset = train_split(tmp_path, **llm_config(server, profile_dir=str(reference)))
    ProfileBuilder(profile_settings(config), dataset, show_progress=False).build()
    assert snapshot(store.path) == snapshot(reference)


@pytest.mark.parametrize("damage", ["nan_row", "row_count"])
def test_status_refuses_what_training_refuses_and_embed_repairs_it(tmp_path, capsys, damage):
    config, _, train_data, _, _ = tiny_data(tmp_path, model="LightGCN_RLM")
    store = ProfileStore(config["profile_dir"])
    ids, vectors, shas = store.read_vectors("item")
    if damage == "nan_row":
        vectors[3, 0] = np.nan
        store.write_vectors("item", ids, vectors, shas, embedder=store.read_seal("item")["embedder"])
    else:
        np.save(store.kind_file("item", "vectors"), vectors[:-2])
    with pytest.raises(ProfileStoreError):
        profile_tensors(config, train_data._dataset)
    path = config_file(tmp_path, "tiny.yaml")
    assert cli.main(["status", "--dataset=tiny", f"--config_files={path}"]) == 1
    out = capsys.readouterr().out
    assert "training would refuse this store" in out and "python -m recbole_llm.profiles embed --dataset=tiny" in out
    assert cli.main(["embed", "--dataset=tiny", f"--config_files={path}"]) == 0
    assert cli.main(["status", "--dataset=tiny", f"--config_files={path}"]) == 0
    user, item = profile_tensors(config, train_data._dataset)
    assert torch_finite(item) and item.shape[0] == train_data._dataset.item_num


def torch_finite(tensor):
    return bool(tensor.isfinite().all())


def test_in_process_a_torn_set_is_re_embedded_without_llm_requests(server, tmp_path):
    store = llm_build(tmp_path, server)
    ids, vectors, shas = store.read_vectors("item")
    with open(store.kind_file("item", "ids"), "w") as f:  # the old, shorter id list next to the new vectors
        f.write("".join(i + "\n" for i in ids[:-5]))
    config, dataset = train_split(tmp_path, **llm_config(server))
    with pytest.raises(ProfileStoreError, match="torn.*profiles embed --dataset=tiny"):
        profile_tensors(config, dataset)
    chat = server.count("chat")
    embedded = ProfileBuilder(profile_settings(config), dataset, show_progress=False).embed()
    assert embedded == {"item": N_ITEMS, "user": 0} and server.count("chat") == chat
    assert profile_tensors(config, dataset)[1].shape[0] == dataset.item_num


def test_in_process_the_circuit_breaker_stops_on_consecutive_connection_failures(server, tmp_path):
    server.script("chat", *["drop"] * 200)
    config, dataset = train_split(tmp_path, **llm_config(server, llm_max_connection_failures=3, llm_backoff_base=1.0))
    builder = ProfileBuilder(profile_settings(config), dataset, show_progress=False)
    with pytest.raises(LLMServerError, match=r"3 requests in a row could not reach .*llm_max_connection_failures=3"):
        builder.build()
    assert server.count("chat") <= 3 + 4  # the breaker's three, and those already in flight
    server.faults["chat"].clear()
    server.script("chat", "drop", "drop")  # fewer than three in a row: retried as before
    assert builder.build()["generated"] == {"item": N_ITEMS, "user": N_USERS}


# -- 5, 6: checks before requests; a dead server ----------------------------------------------


def test_a_bad_setting_fails_before_any_request_is_sent(server, tmp_path):
    config = config_file(tmp_path, "tiny.yaml", **llm_config(server))
    out = profiles_command(tmp_path, config, "build", "--mask_ratio=1.5")
    assert out.returncode == 2 and "mask_ratio=1.5" in out.stderr, out.stderr[-2000:]
    assert server.count() == 0 and not (tmp_path / "profiles" / "item.jsonl").exists()


@pytest.mark.slow  # several processes: ~30-60 s
def test_a_server_that_cannot_be_reached_stops_the_build_once_and_it_resumes(server, tmp_path):
    server.script("chat", *["drop"] * 500)
    # Default retries and backoff (5 retries from 1 s): before the breaker, 70 profiles took minutes.
    config = config_file(tmp_path, "tiny.yaml", **llm_config(server, llm_backoff_base=1.0, llm_concurrency=8))
    out = profiles_command(tmp_path, config, "build")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "5 requests in a row could not reach" in out.stderr and "llm_max_connection_failures=5" in out.stderr
    assert "run the same command again" in out.stderr and out.stderr.count("could not reach") == 1
    chat = [r for r in server.requests if r["endpoint"] == "chat"]
    assert len(chat) <= 5 + 8  # the breaker's five, and those already in flight
    assert not any(b'interactions' in r["body"] for r in chat)  # no user profile was tried after the items failed
    server.faults["chat"].clear()
    resumed = profiles_command(tmp_path, config, "build")
    assert resumed.returncode == 0 and summary_of(resumed.stdout)["generated"] == {"item": N_ITEMS, "user": N_USERS}


# -- 7, 10: data that cannot make profiles, files named --------------------------------------


def ids_only_copy(tmp_path):
    root = tmp_path / "data" / "tiny"
    root.mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, "tiny", "tiny.inter"), root)
    lines = open(os.path.join(FIXTURES, "tiny", "tiny.item")).read().splitlines()
    (root / "tiny.item").write_text("\n".join(["item_id:token"] + [line.split("\t")[0] for line in lines[1:]]) + "\n")
    return str(tmp_path / "data")


def test_a_dataset_of_ids_alone_is_refused_naming_the_fields_and_keys(tmp_path):
    data_path = ids_only_copy(tmp_path)
    with pytest.raises(IdsOnlyError) as refused:
        tiny_data(tmp_path, model="LightGCN_RLM", data_path=data_path)
    message = str(refused.value)
    for words in ("tiny.item", "profile_title_field", "profile_category_fields", "profile_review_field", "profile_user_fields",
                  "tiny.user (no such file)", "profile_missing: zero"):
        assert words in message, words
    assert not ProfileStore(tmp_path / "profiles").read_records("item")  # nothing written
    # Asked for: profile_missing zero accepts profiles from ids.
    config, _, train_data, _, _ = tiny_data(tmp_path, model="LightGCN_RLM", data_path=data_path, profile_missing="zero")
    assert len(ProfileStore(config["profile_dir"]).read_records("item")) == N_ITEMS


@pytest.mark.parametrize("content, problem", [("", "is empty"), ("user_id:token\titem_id:token\n", "has a header but no interactions"),
                                              ("user_id\titem_id\nu1\ti1\n", "have no type")])
def test_a_broken_inter_file_is_named(tmp_path, capsys, content, problem):
    root = tmp_path / "data" / "tiny"
    shutil.copytree(os.path.join(FIXTURES, "tiny"), root)
    (root / "tiny.inter").write_text(content)
    path = config_file(tmp_path, "tiny.yaml", data_path=str(tmp_path / "data"))
    assert cli.main(["build", "--dataset=tiny", f"--config_files={path}"]) == 2
    err = capsys.readouterr().err
    assert f"{root / 'tiny.inter'} {problem}" in err or (f"{root / 'tiny.inter'}:" in err and problem in err), err
    config = Config(model="LightGCN", dataset="tiny", config_dict=tiny_config_dict(tmp_path, data_path=str(tmp_path / "data")))
    with pytest.raises(DatasetFileError, match="tiny.inter"):
        create_dataset(config)
