r"""Chaos run of the profile store: random faults and ``kill -9``s against a local server, then a
check that the store equals a clean build.

A *campaign* builds one store with the ``openai`` writer and embedder against the local
OpenAI-protocol server of tests/openai_server.py, in rounds. Each round scripts random faults on
the server (429 with Retry-After, 500, hang, dropped connection, malformed body, unparseable
answer, fenced answer), starts ``python -m recbole_llm.profiles build`` and kills it with SIGKILL:
either at a random moment after its first request, or stopped exactly before one of the store's
renames (tests/pause_at.py: vectors, ids, text hashes, seal, manifest, compacted records), where a
random kill rarely lands. Some rounds also start a build of another writer (template) while the
first one runs; it must be refused. When the kills of a campaign are spent, a last round runs
to the end, and the store is compared with a clean build of its own (same server, no faults, no
kills): records, vectors by id, manifest. Campaigns repeat until ``--kills`` kills are done.

Counted per round, against the store as it was when the round began:

- *lost*: a profile in the store at the start of a round that is gone or changed after it;
- *duplicates*: a request the server answered for a prompt whose profile the store already held
  (a profile bought twice);
- faults injected are the faults the server actually served.

    python benchmarks/chaos.py                  # 19 kills, seed 0
    python benchmarks/chaos.py --kills 40 --seed 1 --latency 0.2
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
sys.path.insert(0, REPO)
sys.path.insert(0, TESTS)

from openai_server import FAULTS, OpenAIServer  # noqa: E402
from recbole_llm.profiles.prompts import encode_prompt  # noqa: E402
from recbole_llm.profiles.store import ProfileStore  # noqa: E402

KEY_ENV, KEY = "CHAOS_API_KEY", "sk-chaos-0123456789abcdef0123456789"
RENAMES = ["item.npy", "item_ids.txt", "item_text_sha.txt", "item_vectors.json", "item.jsonl",
           "user.npy", "user_ids.txt", "user_vectors.json", "user.jsonl", "manifest.json"]


def write_config(path, workdir, profile_dir, server, writer="openai"):
    config = {
        "data_path": os.path.join(TESTS, "fixtures"),
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "eval_args": {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"},
        "show_progress": False, "state": "WARNING", "seed": 2020, "checkpoint_dir": os.path.join(workdir, "saved"),
        "profile_dir": profile_dir,
        "llm_backend": writer, "llm_model": "fake-llm", "llm_base_url": server.url, "llm_api_key_env": KEY_ENV,
        "embedder": "openai:fake-embed", "embed_batch_size": 16,
        # Enough retries that a scripted fault never fails a profile for good: a failed item would leave
        # user profiles written without it, kept (paid for) rather than rewritten, unlike a clean build.
        "llm_concurrency": 2, "llm_timeout": 1.0, "llm_backoff_base": 0.05, "llm_max_retries": 8, "llm_parse_retries": 6,
    }
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def build_command(config, pause=None, marker=None):
    args = ["build", "--dataset=tiny", f"--config_files={config}"]
    if pause:
        return [sys.executable, os.path.join(TESTS, "pause_at.py"), marker, pause, "--", *args]
    return [sys.executable, "-m", "recbole_llm.profiles", *args]


def held(profile_dir):
    r"""The store's finished profiles: (kind, id) -> (profile, source, prompt_sha)."""
    store = ProfileStore(profile_dir)
    return {(kind, t): (r["profile"], r["source"], r["prompt_sha"]) for kind in ("item", "user") for t, r in store.read_records(kind).items()}


def request_sha(request):
    return hashlib.sha256(encode_prompt(json.loads(request["body"])["messages"]).encode("utf-8")).hexdigest()


def snapshot(profile_dir):
    store = ProfileStore(profile_dir)
    result = {"manifest": {k: v for k, v in store.read_manifest().items() if k != "updated"}}
    for kind in ("item", "user"):
        result[kind] = store.read_records(kind)
        ids, vectors, _ = store.read_vectors(kind)
        result[f"{kind}_vectors"] = {i: np.round(v, 6).tolist() for i, v in zip(ids, vectors)}
    return result


class Chaos:
    def __init__(self, args, server, workdir):
        self.args, self.server, self.workdir = args, server, workdir
        self.rng = random.Random(args.seed)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", KEY_ENV: KEY, "PYTHONPATH": REPO}
        self.counts = {"rounds": 0, "random kills": 0, "kills at a rename": 0, "concurrent builds": 0,
                       "concurrent refused": 0, "lost": 0, "duplicates": 0, "requests": 0, "campaigns": 0,
                       "equal to a clean build": 0, "status ok": 0, "stored": 0, "traced": 0}
        self.kill_targets = {}
        self.answered = set()  # prompt shas the server answered: every stored profile must trace to one

    def kills(self):
        return self.counts["random kills"] + self.counts["kills at a rename"]

    def campaign(self, number):
        profile_dir = os.path.join(self.workdir, f"store-{number}")
        config = write_config(os.path.join(self.workdir, f"chaos-{number}.yaml"), self.workdir, profile_dir, self.server)
        template = write_config(os.path.join(self.workdir, f"template-{number}.yaml"), self.workdir, profile_dir, self.server, "template")
        budget = min(self.args.kills_per_campaign, self.args.kills - self.kills())
        spent = 0
        while True:
            final = spent >= budget
            before, seen = held(profile_dir), len(self.server.requests)
            if final:  # the last round runs to the end, as a user's last try would
                for queue in self.server.faults.values():
                    queue.clear()
            else:
                faults = [self.rng.choice(FAULTS) for _ in range(self.rng.randint(1, self.args.faults_per_round))]
                self.server.script("chat", *faults)
                if self.rng.random() < 0.3:
                    self.server.script("embeddings", self.rng.choice(["429", "500", "drop", "badjson"]))
            killed, complete = self.round(config, template, profile_dir, final, seen)
            self.counts["rounds"] += 1
            after = held(profile_dir)
            self.counts["lost"] += sum(1 for key, value in before.items() if after.get(key) != value)
            finished = {value[2] for value in before.values()}
            answered = [r for r in self.server.requests[seen:] if r["endpoint"] == "chat" and r["fault"] in (None, "fenced")]
            self.counts["requests"] += len(answered)
            self.answered.update(request_sha(r) for r in answered)
            self.counts["duplicates"] += sum(1 for r in answered if request_sha(r) in finished)
            spent += killed
            if final:
                break
            if complete:  # a round ran to its end: nothing is left to kill in this store
                budget = spent
        return profile_dir, config

    def round(self, config, template, profile_dir, final, seen):
        r"""One build; returns (1 if it was killed, whether it ran to its end with the store complete)."""
        if final:
            done = subprocess.run(build_command(config), cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise SystemExit(f"the final build failed (rc {done.returncode}): {done.stderr[-3000:]}")
            return 0, True
        pause = self.rng.choice(RENAMES) if self.rng.random() < 0.5 else None
        marker = os.path.join(self.workdir, f"paused-{time.time_ns()}")
        process = subprocess.Popen(build_command(config, pause, marker), cwd=self.workdir, env=self.env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        if pause:
            while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
                time.sleep(0.02)
        else:
            while len(self.server.requests) == seen and process.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(self.rng.uniform(0, self.args.kill_window))
        # Another writer's build, while this one holds the store (stopped at a rename): it must be refused.
        if pause and self.rng.random() < self.args.concurrent and process.poll() is None:
            self.counts["concurrent builds"] += 1
            other = subprocess.run(build_command(template), cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=600)
            if other.returncode == 2 and "being written by another build" in other.stderr:
                self.counts["concurrent refused"] += 1
        if process.poll() is not None:  # finished before the kill (nothing left, or no such rename)
            return 0, process.returncode == 0
        process.send_signal(signal.SIGKILL)
        process.wait()
        if pause:
            self.counts["kills at a rename"] += 1
            self.kill_targets[pause] = self.kill_targets.get(pause, 0) + 1
        else:
            self.counts["random kills"] += 1
        return 1, False

    def check(self, profile_dir, config, number):
        reference = os.path.join(self.workdir, f"reference-{number}")
        clean = write_config(os.path.join(self.workdir, f"clean-{number}.yaml"), self.workdir, reference, self.server)
        done = subprocess.run(build_command(clean), cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"the clean build failed: {done.stderr[-3000:]}")
        self.counts["equal to a clean build"] += snapshot(profile_dir) == snapshot(reference)
        stored = held(profile_dir)
        self.counts["stored"] += len(stored)
        self.counts["traced"] += sum(1 for value in stored.values() if value[2] in self.answered)
        status = subprocess.run([sys.executable, "-m", "recbole_llm.profiles", "status", "--dataset=tiny", f"--config_files={config}"],
                                cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=600)
        self.counts["status ok"] += status.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=19, help="kill -9s in all")
    parser.add_argument("--kills-per-campaign", type=int, default=7,
                        help="kills before a campaign's store is completed and checked (fewer when a round completes it first)")
    parser.add_argument("--faults-per-round", type=int, default=6, help="at most this many chat faults scripted per round")
    parser.add_argument("--kill-window", type=float, default=2.0, help="seconds after a round's first request within which it is killed")
    parser.add_argument("--concurrent", type=float, default=0.4, help="share of rounds stopped at a rename that also start a template build")
    parser.add_argument("--latency", type=float, default=0.25, help="the server's seconds per answer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    workdir = tempfile.mkdtemp(prefix="chaos-")
    try:
        with OpenAIServer(api_key=KEY, latency=args.latency, hang_seconds=2.0, retry_after="0.2") as server:
            server.httpd.handle_error = lambda request, address: None  # a killed client resets its connections
            chaos = Chaos(args, server, workdir)
            number = 0
            while chaos.kills() < args.kills:
                profile_dir, config = chaos.campaign(number)
                chaos.check(profile_dir, config, number)
                chaos.counts["campaigns"] += 1
                number += 1
            faults = {}
            for r in server.requests:
                if r["fault"] is not None:
                    faults[r["fault"]] = faults.get(r["fault"], 0) + 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    c = chaos.counts
    print("| measure | value |\n|---|---|")
    print(f"| faults injected (served) | {sum(faults.values())} ({', '.join(f'{k} {v}' for k, v in sorted(faults.items()))}) |")
    print(f"| kill -9 at a random moment | {c['random kills']} |")
    print(f"| kill -9 stopped before a rename | {c['kills at a rename']} ({', '.join(f'{k} {v}' for k, v in sorted(chaos.kill_targets.items()))}) |")
    print(f"| builds of another writer started meanwhile / refused | {c['concurrent builds']} / {c['concurrent refused']} |")
    print(f"| build rounds / campaigns | {c['rounds']} / {c['campaigns']} |")
    print(f"| profiles answered by the server | {c['requests']} |")
    print(f"| stored profiles traced to an answered request (checks the duplicate count's hashing) | {c['traced']} of {c['stored']} |")
    print(f"| profiles lost | {c['lost']} |")
    print(f"| duplicates (a finished profile requested again) | {c['duplicates']} |")
    print(f"| final store equals a clean build | {c['equal to a clean build']} of {c['campaigns']} |")
    print(f"| `profiles status` accepts the final store | {c['status ok']} of {c['campaigns']} |")
    print(f"| wall time | {time.time() - started:.0f} s |")
    ok = c["lost"] == 0 and c["duplicates"] == 0 and c["equal to a clean build"] == c["campaigns"] == c["status ok"]
    ok = ok and c["concurrent refused"] == c["concurrent builds"] and c["traced"] == c["stored"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
