"""Each backbone's <Base>_RLM through the run entry point on ml-100k (1 epoch each), in one subprocess."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
# LightGCN_RLM has its own CLI tests (test_cli.py); DGCF, the slowest, runs on tiny data only.
# Each other <Base>_RLM once, con and gen alternating.
BASES = ["SGL", "NGCF", "NCL", "BPR", "SpectralCF", "SimGCL", "GCCF", "DCCF", "AutoCF"]
RUNS = [(base + "_RLM", "gen" if n % 2 else "con") for n, base in enumerate(BASES)]
FAST = {"epochs": 1, "train_batch_size": 4096, "eval_step": 1, "show_progress": False, "num_clusters": 100, "state": "WARNING"}
SCRIPT = """
import json, sys, time
from recbole_llm import run_recbole_llm
for model, align in json.loads(sys.argv[1]):
    start = time.time()
    config = dict(json.loads(sys.argv[2]), align=align)
    result = run_recbole_llm(model=model, dataset="ml-100k", config_dict=config, saved=False)
    print("RESULT " + json.dumps([model, align, dict(result["test_result"]), round(time.time() - start, 1)]), flush=True)
"""


def test_every_backbone_runs_on_ml100k(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(RUNS), json.dumps(FAST)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": REPO},
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    results = [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert [tuple(r[:2]) for r in results] == [tuple(run) for run in RUNS]
    for model, align, test, _seconds in results:
        assert set(test) == {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}
        assert 0.0 < test["recall@10"] < 1.0, (model, align, test)  # a real ranking, not NaN scores
    assert os.path.isfile(tmp_path / "profiles" / "ml-100k" / "manifest.json")

