r"""Group metrics (recbole_llm.evaluation.metrics) on hand-made cases with known answers, and their
registration with RecBole's evaluator."""

import math

import pytest
import torch
from conftest import tiny_data
from recbole.evaluator import Evaluator
from recbole.evaluator.collector import DataStruct

from recbole_llm.evaluation import metrics as group  # noqa: F401  (registers the metrics)


def approx(value):
    return pytest.approx(value, abs=1e-6)  # RecBole rounds to metric_decimal_place (6 here)


LOG2 = [1 / math.log2(r + 1) for r in range(1, 6)]


def struct(ranked, positives, users, item_counts, user_counts):
    data = DataStruct()
    data.set("rec.items", torch.tensor(ranked))
    data.set("rec.positives", torch.tensor(positives))
    data.set("rec.users", torch.tensor(users))
    data.set("data.item_train_counts", torch.tensor(item_counts))
    data.set("data.user_train_counts", torch.tensor(user_counts))
    return data


CONFIG = {"topk": [1, 3], "metric_decimal_place": 6, "group_head_share": 0.2, "group_history_buckets": [2, 5]}

# 11 items (0 = padding). Training counts: items 1, 2 are the head (20% of 10 = 2 items), items 9
# and 10 have no training interaction (cold).
ITEM_COUNTS = [0, 50, 40, 9, 8, 7, 6, 5, 4, 0, 0]
# Three evaluated users (rows 0, 1, 2) = user ids 1, 2, 3 with 0, 2 and 7 training interactions.
USER_COUNTS = [0, 0, 2, 7]
USERS = [1, 2, 3]
RANKED = [
    [9, 1, 3],  # row 0 positives: 9 (cold), 3 (warm, tail), 5 (warm, tail)
    [2, 4, 10],  # row 1 positives: 10 (cold), 6 (warm, tail)
    [5, 6, 7],  # row 2 positives: 1 (warm, head)
]
POSITIVES = [[0, 9], [0, 3], [0, 5], [1, 10], [1, 6], [2, 1]]


def evaluate(*names):
    return Evaluator({**CONFIG, "metrics": list(names)}).evaluate(struct(RANKED, POSITIVES, USERS, ITEM_COUNTS, USER_COUNTS))


def test_cold_and_warm_recall_and_ndcg():
    result = evaluate("ColdRecall", "ColdNDCG", "WarmRecall", "WarmNDCG")
    # Cold: row 0 has cold positive 9 at rank 1; row 1 has cold 10 at rank 3; row 2 none (left out).
    assert result["coldrecall@1"] == approx((1 + 0) / 2)
    assert result["coldrecall@3"] == approx((1 + 1) / 2)
    assert result["coldndcg@3"] == approx((1 + LOG2[2] / LOG2[0]) / 2)
    # Warm: row 0 positives {3, 5}: 3 at rank 3 -> recall@3 1/2, ndcg@3 = (1/log2 4) / (1 + 1/log2 3);
    # row 1 {6}: not in top 3 -> 0; row 2 {1}: 0.
    assert result["warmrecall@3"] == approx((0.5 + 0 + 0) / 3)
    assert result["warmrecall@1"] == 0
    assert result["warmndcg@3"] == approx((LOG2[2] / (LOG2[0] + LOG2[1])) / 3)


def test_head_and_tail():
    result = evaluate("HeadRecall", "TailRecall", "HeadNDCG")
    # Head = items 1, 2. Only row 2 has a head positive (1), not retrieved.
    assert result["headrecall@3"] == 0
    assert result["headndcg@3"] == 0
    # Tail = every other item, cold ones included: row 0 {9, 3, 5}: 9 and 3 hit -> 2/3;
    # row 1 {10, 6}: 10 hit -> 1/2; row 2 has no tail positive.
    assert result["tailrecall@3"] == approx((2 / 3 + 1 / 2) / 2)
    assert result["tailrecall@1"] == approx((1 / 3 + 0) / 2)


def test_history_buckets():
    result = evaluate("HistoryRecall")
    # Buckets [0] (user 1), [1-2] (user 2), [3-5] (nobody), [6+] (user 3).
    assert result["historyrecall[0]@3"] == approx(2 / 3)
    assert result["historyrecall[1-2]@3"] == approx(1 / 2)
    assert math.isnan(result["historyrecall[3-5]@3"])
    assert result["historyrecall[6+]@3"] == 0
    assert result["historyrecall[0]@1"] == approx(1 / 3)


def test_group_of_everything_is_recboles_metric():
    # Warm + cold where no item is cold is RecBole's own Recall/NDCG.
    counts = [0] + [5] * 10
    data = struct(RANKED, POSITIVES, USERS, counts, USER_COUNTS)
    ours = Evaluator({**CONFIG, "metrics": ["WarmRecall", "WarmNDCG"]}).evaluate(data)
    hits = torch.tensor([[r in {i for row, i in POSITIVES if row == n} for r in ranks] for n, ranks in enumerate(RANKED)])
    pos_len = torch.bincount(torch.tensor(POSITIVES)[:, 0])
    data.set("rec.topk", torch.cat([hits.int(), pos_len.view(-1, 1)], dim=1))
    recbole = Evaluator({**CONFIG, "metrics": ["Recall", "NDCG"]}).evaluate(data)
    for k in (1, 3):
        assert ours[f"warmrecall@{k}"] == approx(recbole[f"recall@{k}"])
        assert ours[f"warmndcg@{k}"] == approx(recbole[f"ndcg@{k}"])


def test_registered_metrics_run_in_recboles_trainer_and_results(tmp_path):
    from recbole_llm import get_model, get_trainer

    metrics = ["Recall", "ColdRecall", "WarmNDCG", "HeadRecall", "TailRecall", "HistoryRecall"]
    config, _, train_data, valid_data, test_data = tiny_data(tmp_path, model="LightGCN", metrics=metrics, valid_metric="tailrecall@5")
    model = get_model("LightGCN")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "LightGCN")(config, model)
    _, valid = trainer.fit(train_data, valid_data, saved=False)
    test = trainer.evaluate(test_data, load_best_model=False)
    for result in (valid, test):
        assert {"recall@5", "coldrecall@5", "warmndcg@5", "headrecall@5", "tailrecall@5", "historyrecall[6-20]@5"} <= set(result)
    assert trainer.best_valid_score == valid["tailrecall@5"]


def test_group_metrics_refuse_a_sampled_ranking(tmp_path):
    from recbole_llm import get_model, get_trainer

    eval_args = {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": "user", "mode": "uni5"}
    config, _, train_data, valid_data, _ = tiny_data(tmp_path, model="LightGCN", metrics=["ColdRecall"], valid_metric="coldrecall@5",
                                                     eval_args=eval_args)
    trainer = get_trainer(config["MODEL_TYPE"], "LightGCN")(config, get_model("LightGCN")(config, train_data._dataset))
    with pytest.raises(ValueError, match="mode: full"):
        trainer.fit(train_data, valid_data, saved=False)


def test_group_keys_are_checked(tmp_path):
    from recbole_llm import Config
    from recbole_llm.checks import SettingError

    with pytest.raises(SettingError, match="group_history_buckets"):
        Config(model="LightGCN", dataset="tiny", config_dict={"group_history_buckets": [20, 5]}, command_line=False)
    with pytest.raises(SettingError, match="group_head_share"):
        Config(model="LightGCN", dataset="tiny", config_dict={"group_head_share": 1.5}, command_line=False)


def test_group_metrics_in_tuning_results(tmp_path, monkeypatch):
    import sys

    from conftest import tiny_config_dict
    from recbole_llm.tuning import run_hyper

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # RecBole's Config reads --key=value from sys.argv
    params_file = tmp_path / "cold.hyper"
    params_file.write_text("cold_start choice ['none','knn']\n")
    config = tiny_config_dict(tmp_path, align="none", metrics=["Recall", "TailRecall", "HistoryRecall"], valid_metric="tailrecall@5")
    result = run_hyper("LightGCN_RLM", "tiny", str(params_file), config_dict=config, output_file=str(tmp_path / "hyper.result"))
    assert len(result["results"]) == 2
    for trial in result["results"].values():
        assert trial["best_valid_score"] == trial["best_valid_result"]["tailrecall@5"]
        assert {"recall@5", "tailrecall@5", "historyrecall[6-20]@5"} <= set(trial["test_result"])
    assert "tailrecall@5" in (tmp_path / "hyper.result").read_text()
