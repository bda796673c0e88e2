"""End-to-end: the README's command on ml-100k in a subprocess, and checkpoint reload in a new one."""

import ast
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
RUN = os.path.join(REPO, "run_recbole_llm.py")
FAST = ["--epochs=1", "--show_progress=False", "--train_batch_size=4096", "--eval_step=1"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def run_cli(workdir, *args):
    out = subprocess.run([sys.executable, RUN, *args, *FAST], cwd=workdir, capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    return log


def parse_test_result(log):
    match = re.search(r"test result.*?: (OrderedDict\(.*\))", log)
    assert match, log[-2000:]
    return dict(ast.literal_eval(match.group(1).replace("OrderedDict(", "")[:-1]))


def test_lightgcn_rlm_builds_the_store_trains_and_reloads(workdir):
    log = run_cli(workdir, "--model=LightGCN_RLM")
    assert "No profile store at profiles/ml-100k: building it now" in log
    assert "train_loss2" in log and "best valid" in log
    result = parse_test_result(log)
    assert set(result) == {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}
    assert os.path.isfile(workdir / "profiles" / "ml-100k" / "manifest.json")
    (checkpoint,) = glob.glob(str(workdir / "saved" / "LightGCN_RLM-*.pth"))
    reload = (
        "import json, sys; from recbole_llm import load_data_and_model; from recbole.utils import get_trainer\n"
        "config, model, dataset, train, valid, test = load_data_and_model(sys.argv[1])\n"
        "trainer = get_trainer(config['MODEL_TYPE'], config['model'])(config, model)\n"
        "print('RESULT=' + json.dumps(dict(trainer.evaluate(test, load_best_model=False, show_progress=False))))\n"
    )
    out = subprocess.run([sys.executable, "-c", reload, checkpoint], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    reloaded = json.loads(out.stdout.split("RESULT=")[1])
    assert reloaded == result


def test_gen_reuses_the_store(workdir):
    log = run_cli(workdir, "--model=LightGCN_RLM", "--align=gen")
    assert "building it now" not in log
    assert not re.search(r"(Writing|Embedding) \d+ (user|item) profiles", log)
    assert "train_loss2" in log
    parse_test_result(log)


def test_plain_recbole_model(workdir):
    log = run_cli(workdir, "--model=LightGCN")
    assert "train loss" in log and "train_loss2" not in log
    parse_test_result(log)
