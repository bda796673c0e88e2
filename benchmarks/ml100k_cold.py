r"""Cold start and the long tail on ml-100k: who ranks items (or users) that have text but no history.

``--cold item`` (default) / ``--cold user``: per seed, ColdRec's protocol written by
``python -m recbole_llm.data.cold_split`` (20% of the items, or users, held out with all their
interactions, split between valid and test; the rest 80/10/10 per user; negatives drawn among
warm items only). Rankers, all through RecBole's evaluator with the plugin's group metrics
(cold items ranked among ALL items):

- popularity (RecBole's Pop) and profiles alone (cosine of user and item profile vectors);
- LightGCN (``LightGCN_RLM`` with ``align: none``, which is LightGCN) and LightGCN_RLM con / gen,
  each trained ONCE (cold_start none; early stopping on valid Recall@20), then its best checkpoint
  reloaded with ``cold_start`` none, knn and projector and evaluated on test. So the cold-start
  rows of one model share its weights, and every cold-start row is a checkpoint reload.

It also times one full-sort evaluation pass over the test users with each ``cold_start``,
interleaved (``--timing-reps`` rounds), process CPU time on one thread.

``--sparse``: the existing sparse split (``benchmarks/configs/ml-100k-sparse.yaml``), LightGCN vs
LightGCN_RLM con / gen, their group metrics (head/tail items, user history buckets, cold/warm).

    OMP_NUM_THREADS=1 python benchmarks/ml100k_cold.py --seeds 2020 2021 2022 --checkpoints ckpt --record cold.jsonl
    OMP_NUM_THREADS=1 python benchmarks/ml100k_cold.py --cold user --seeds 2020 --record cold-user.jsonl
    OMP_NUM_THREADS=1 python benchmarks/ml100k_cold.py --sparse --seeds 2020 --record sparse.jsonl
    python benchmarks/ml100k_cold.py --table cold.jsonl
    # every scoring again from the kept checkpoints; cold-start scoring's share of a pass:
    OMP_NUM_THREADS=1 python benchmarks/ml100k_cold.py --reevaluate cold.jsonl --record cold-eval.jsonl
    OMP_NUM_THREADS=1 python benchmarks/ml100k_cold.py --overhead cold.jsonl --record overhead.jsonl

CPU time is scarce: one learning rate (0.01) and at most ``--max-epochs`` (40) epochs for every
model, patience ``--stopping-step`` (5).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole.data import create_dataset  # noqa: E402
from recbole.model.abstract_recommender import GeneralRecommender  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

from recbole_llm import Config, get_model  # noqa: E402
from recbole_llm.build import ensure_profiles  # noqa: E402
from recbole_llm.compat import load_checkpoint  # noqa: E402
from recbole_llm.data.cold_split import write_split  # noqa: E402
from recbole_llm.data.loader import profile_tensors  # noqa: E402
from recbole_llm.data.preparation import data_preparation  # noqa: E402
from recbole_llm.trainer import get_trainer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_CONFIG = {
    "topk": [20],
    "valid_metric": "Recall@20",
    "train_batch_size": 2048,
    "eval_step": 1,
    "show_progress": False,
    "state": "WARNING",
}
COLD_METRICS = ["Recall", "NDCG", "ColdRecall", "ColdNDCG", "WarmRecall", "WarmNDCG"]
SPARSE_METRICS = ["Recall", "NDCG", "HeadRecall", "HeadNDCG", "TailRecall", "TailNDCG", "HistoryRecall", "HistoryNDCG",
                  "ColdRecall", "WarmRecall"]
ALIGNS = ["none", "con", "gen"]
# (cold_start, cold_start_norm) pairs each trained model is evaluated with.
SCORINGS = [("none", "none"), ("knn", "none"), ("knn", "warm_mean"), ("projector", "none"), ("projector", "warm_mean")]


class ProfileCosine(GeneralRecommender):
    r"""Profiles alone: the score of (user, item) is the cosine of their profile vectors."""

    input_type = None

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        user, item = profile_tensors(config, dataset)
        self.user_profile, self.item_profile = F.normalize(user, dim=1), F.normalize(item, dim=1)
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def full_sort_predict(self, interaction):
        return (self.user_profile[interaction[self.USER_ID]] @ self.item_profile.T).view(-1)


def _config(model, seed, files, extra, settings):
    config_dict = {**BASE_CONFIG, **settings, "seed": seed, **extra}
    return Config(model=model, dataset=settings["dataset"], config_file_list=files, config_dict=config_dict, command_line=False)


def _evaluate(config, model, train_data, test_data):
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)
    return dict(trainer.evaluate(test_data, load_best_model=False)), trainer


def _prepare(config):
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    return data_preparation(config, dataset)


def run_seed(seed, args, record):
    settings, files = _setting(seed, args)
    checkpoints = args.checkpoints or tempfile.mkdtemp(prefix="cold-ckpt-")
    extra = {"checkpoint_dir": checkpoints, "epochs": args.max_epochs, "stopping_step": args.stopping_step,
             "learning_rate": args.learning_rate}
    knn = _config("LightGCN_RLM", seed, files, {**extra, "align": "none", "cold_start": "knn"}, settings)
    train_data, valid_data, test_data = _prepare(knn)
    ensure_profiles(knn, train_data._dataset)
    if not args.sparse:
        pop = _config("Pop", seed, files, {**extra, "epochs": 1}, settings)
        train_data, valid_data, test_data = _prepare(pop)
        model = get_model("Pop")(pop, train_data._dataset)
        trainer = get_trainer(pop["MODEL_TYPE"], "Pop")(pop, model)
        trainer.fit(train_data, valid_data, saved=False)
        record(seed, "popularity", "-", dict(trainer.evaluate(test_data, load_best_model=False)), None)
        cosine_config = _config("LightGCN_RLM", seed, files, {**extra, "align": "none", "cold_start": "knn"}, settings)
        train_data, valid_data, test_data = _prepare(cosine_config)
        result, _ = _evaluate(cosine_config, ProfileCosine(cosine_config, train_data._dataset), train_data, test_data)
        record(seed, "profiles alone (cosine)", "-", result, None)
    for align in args.aligns:
        config = _config("LightGCN_RLM", seed, files, {**extra, "align": align, "cold_start": "none"}, settings)
        train_data, valid_data, test_data = _prepare(config)
        init_seed(seed, config["reproducibility"])
        model = get_model("LightGCN_RLM")(config, train_data._dataset)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        epochs = _count_epochs(trainer)
        start = time.time()
        best_valid, _ = trainer.fit(train_data, valid_data, saved=True)
        train_info = {"best_valid": best_valid, "epochs": epochs[0], "train_s": round(time.time() - start, 1),
                      "checkpoint": os.path.abspath(trainer.saved_model_file)}
        name = "LightGCN" if align == "none" else f"LightGCN_RLM {align}"
        scorings = SCORINGS if not args.sparse else SCORINGS[:1]
        evaluate_checkpoint(seed, align, name, train_info, settings, files, extra, (train_data, test_data), record, scorings,
                            args.timing_reps)


def evaluate_checkpoint(seed, align, name, train_info, settings, files, extra, data, record, scorings, timing_reps):
    r"""Reload the best checkpoint with each (cold_start, cold_start_norm) and evaluate it on test."""
    train_data, test_data = data
    state = load_checkpoint(train_info["checkpoint"], map_location="cpu")
    passes = {}
    for cold_start, norm in scorings:
        reload = _config("LightGCN_RLM", seed, files, {**extra, "align": align, "cold_start": cold_start, "cold_start_norm": norm},
                         settings)
        model = get_model("LightGCN_RLM")(reload, train_data._dataset)
        model.load_state_dict(state["state_dict"])
        model.load_other_parameter(state.get("other_parameter"))
        result, eval_trainer = _evaluate(reload, model, train_data, test_data)
        label = cold_start if norm == "none" else f"{cold_start} + {norm}"
        record(seed, name, label, result, train_info)
        passes[label] = eval_trainer
    if len(passes) > 1 and timing_reps:
        record(seed, name, "timing", _time_passes(passes, test_data, timing_reps), None)


def overhead(paths, args, record, reps=50):
    r"""What cold-start scoring adds to a full-sort evaluation pass, measured in pieces that are
    steady on a shared machine: the pass itself (cold_start none, median of ``--timing-reps``) and
    the work cold-start scoring adds once per pass (cold rows built on top of the propagation,
    median of ``reps``), CPU seconds on one thread."""
    done = set()
    for run in read_records(paths):
        train = run.get("train")
        if train is None or run["cold_start"] == "timing" or (run["seed"], run["variant"]) in done:
            continue
        done.add((run["seed"], run["variant"]))
        seed, align = run["seed"], "none" if run["variant"] == "LightGCN" else run["variant"].split()[-1]
        settings, files = _setting(seed, args)
        state = load_checkpoint(train["checkpoint"], map_location="cpu")
        result = {}
        for cold_start, norm in SCORINGS:
            config = _config("LightGCN_RLM", seed, files, {"align": align, "cold_start": cold_start, "cold_start_norm": norm}, settings)
            train_data, _, test_data = _prepare(config)
            model = get_model("LightGCN_RLM")(config, train_data._dataset)
            model.load_state_dict(state["state_dict"])
            _, trainer = _evaluate(config, model, train_data, test_data)
            label = cold_start if norm == "none" else f"{cold_start} + {norm}"
            if cold_start == "none":
                result["pass"] = _time_passes({"none": trainer}, test_data, args.timing_reps)["none"]
                continue
            with torch.no_grad():
                propagation = _median_time(lambda: model.rlm_adapter.eval_embeddings(model), reps)
                cold = _median_time(lambda: (setattr(model, "_cold_cache", None), model.cold_start_embeddings()), reps)
            result[label] = cold - propagation
        record(seed, run["variant"], "overhead", result, None)


def _median_time(call, reps):
    times = []
    for _ in range(reps):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return statistics.median(times)


def reevaluate(paths, args, record):
    r"""Evaluate the checkpoints of earlier records again (every scoring), copying their other rows."""
    done = set()
    for run in read_records(paths):
        train = run.get("train")
        if train is None or run["cold_start"] == "timing":
            if run["cold_start"] != "timing":
                record(run["seed"], run["variant"], run["cold_start"], run["metrics"], None)
            continue
        key = (run["seed"], run["variant"])
        if key in done:
            continue
        done.add(key)
        seed = run["seed"]
        settings, files = _setting(seed, args)
        extra = {"epochs": args.max_epochs, "stopping_step": args.stopping_step, "learning_rate": args.learning_rate}
        align = "none" if run["variant"] == "LightGCN" else run["variant"].split()[-1]
        config = _config("LightGCN_RLM", seed, files, {**extra, "align": align}, settings)
        train_data, _, test_data = _prepare(config)
        scorings = SCORINGS if not args.sparse else SCORINGS[:1]
        evaluate_checkpoint(seed, align, run["variant"], train, settings, files, extra, (train_data, test_data), record, scorings,
                            args.timing_reps)


def _count_epochs(trainer):
    count = [0]
    train_epoch = trainer._train_epoch

    def counted(*args, **kwargs):
        count[0] += 1
        return train_epoch(*args, **kwargs)

    trainer._train_epoch = counted
    return count


def _time_passes(trainers, test_data, reps):
    r"""CPU seconds of one full-sort evaluation pass per cold_start, interleaved, median over reps."""
    times = {name: [] for name in trainers}
    for _ in range(reps):
        for name, trainer in trainers.items():
            # As after a training epoch: LightGCN's own full_sort_predict keeps its propagated
            # embeddings until calculate_loss clears them; the cold-start cache is cleared by eval().
            trainer.model.restore_user_e = trainer.model.restore_item_e = None
            start = time.process_time()
            trainer.evaluate(test_data, load_best_model=False)
            times[name].append(time.process_time() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _setting(seed, args):
    if args.sparse:
        return {"dataset": "ml-100k", "metrics": SPARSE_METRICS, "profile_dir": f"profiles/ml-100k-sparse-seed{seed}"}, [
            os.path.join(HERE, "configs", "ml-100k-sparse.yaml")
        ]
    config_path, counts = write_split("ml-100k", args.data_dir, args.cold, args.share, seed)
    name = os.path.basename(os.path.dirname(config_path))
    print(f"seed {seed}: {name} {counts}", file=sys.stderr, flush=True)
    metrics = COLD_METRICS if args.cold == "item" else ["Recall", "NDCG", "HistoryRecall", "HistoryNDCG"]
    settings = {"dataset": name, "metrics": metrics, "profile_dir": f"profiles/{name}"}
    if args.cold == "user":
        settings["group_history_buckets"] = [10**9]  # [0]: cold users, [1-1e9]: warm users
    return settings, [config_path]


def read_records(paths):
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            runs.extend(json.loads(line) for line in f if line.strip())
    return runs


COLUMNS = {
    "item": [("recall@20", "Recall@20"), ("ndcg@20", "NDCG@20"), ("warmrecall@20", "warm Recall@20"),
             ("warmndcg@20", "warm NDCG@20"), ("coldrecall@20", "cold Recall@20"), ("coldndcg@20", "cold NDCG@20")],
    "user": [("recall@20", "Recall@20"), ("ndcg@20", "NDCG@20"), ("historyrecall[1-1000000000]@20", "warm-user Recall@20"),
             ("historyndcg[1-1000000000]@20", "warm-user NDCG@20"), ("historyrecall[0]@20", "cold-user Recall@20"),
             ("historyndcg[0]@20", "cold-user NDCG@20")],
    "sparse": [("recall@20", "Recall@20"), ("headrecall@20", "head Recall@20"), ("tailrecall@20", "tail Recall@20"),
               ("historyrecall[1-5]@20", "hist 1-5"), ("historyrecall[6-20]@20", "hist 6-20"),
               ("historyrecall[21-50]@20", "hist 21-50"), ("historyrecall[51+]@20", "hist 51+"),
               ("coldrecall@20", "cold Recall@20"), ("warmrecall@20", "warm Recall@20")],
}


def print_table(runs, kind):
    columns = COLUMNS[kind]
    rows = {}
    for run in runs:
        if run["cold_start"] not in ("timing", "overhead"):
            rows.setdefault((run["variant"], run["cold_start"]), []).append(run)
    seeds = sorted({run["seed"] for run in runs})
    print(f"\nml-100k {kind}, seeds {seeds}, test, mean (per seed)\n")
    print("| ranker | cold_start | " + " | ".join(label for _, label in columns) + " | epochs |")
    print("|---|---|" + "---|" * (len(columns) + 1))
    for (variant, cold_start), group in rows.items():
        group = sorted(group, key=lambda r: r["seed"])
        cells = []
        for key, _ in columns:
            values = [r["metrics"].get(key, float("nan")) for r in group]
            per_seed = " / ".join(f"{v:.4f}" for v in values)
            cells.append(f"{statistics.mean(values):.4f} ({per_seed})" if len(values) > 1 else f"{values[0]:.4f}")
        epochs = " / ".join(str(r["train"]["epochs"]) for r in group if r.get("train")) or "-"
        print(f"| {variant} | {cold_start} | " + " | ".join(cells) + f" | {epochs} |")
    overheads = [run for run in runs if run["cold_start"] == "overhead"]
    if overheads:
        names = [n for n in overheads[0]["metrics"] if n != "pass"]
        print("\nCold-start scoring's work per full-sort evaluation pass over the test users (CPU s, median), and its share of the pass\n")
        print("| model | seed | pass, cold_start none (s) | " + " | ".join(f"{n}: added s (share)" for n in names) + " |")
        print("|---|---|---|" + "---|" * len(names))
        for run in overheads:
            t = run["metrics"]
            cells = [f"{t[n]:.4f} ({t[n] / t['pass']:+.1%})" for n in names]
            print(f"| {run['variant']} | {run['seed']} | {t['pass']:.3f} | " + " | ".join(cells) + " |")
    timings = [run for run in runs if run["cold_start"] == "timing"]
    if timings:
        print("\nFull-sort evaluation pass over the test users, CPU seconds (median of the interleaved rounds)\n")
        names = [n for n in timings[0]["metrics"] if n != "none"]
        print("| model | seed | none (s) | " + " | ".join(f"{n} (s, vs none)" for n in names) + " |")
        print("|---|---|---|" + "---|" * len(names))
        for run in timings:
            t = run["metrics"]
            cells = [f"{t[n]:.3f} ({t[n] / t['none'] - 1:+.1%})" for n in names]
            print(f"| {run['variant']} | {run['seed']} | {t['none']:.3f} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--cold", choices=["item", "user"], default="item")
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--sparse", action="store_true", help="the sparse split's group metrics instead")
    parser.add_argument("--aligns", nargs="+", default=ALIGNS, choices=ALIGNS)
    parser.add_argument("--data-dir", default=os.path.join("dataset", "cold"), help="where the splits are written")
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--stopping-step", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--checkpoints", default=None, help="keep the best checkpoints here (default: a temporary folder)")
    parser.add_argument("--timing-reps", type=int, default=5)
    parser.add_argument("--record", default=None, help="append each result as a JSON line")
    parser.add_argument("--table", nargs="+", default=None, help="print the table of these records")
    parser.add_argument("--reevaluate", nargs="+", default=None, help="evaluate the checkpoints of these records again")
    parser.add_argument("--overhead", nargs="+", default=None, help="time cold-start scoring's share of an evaluation pass")
    args = parser.parse_args()
    kind = "sparse" if args.sparse else args.cold
    if args.table:
        print_table(read_records(args.table), kind)
        return
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    runs = []

    def record(seed, variant, cold_start, metrics, train):
        run = {"seed": seed, "kind": kind, "variant": variant, "cold_start": cold_start, "metrics": metrics, "train": train,
               "args": {k: v for k, v in vars(args).items() if k not in ("table", "record")}}
        runs.append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
        if args.record:
            with open(args.record, "a", encoding="utf-8") as f:
                f.write(json.dumps(run) + "\n")

    if args.overhead:
        overhead(args.overhead, args, record)
    elif args.reevaluate:
        reevaluate(args.reevaluate, args, record)
    else:
        for seed in args.seeds:
            run_seed(seed, args, record)
    print_table(runs, kind)


if __name__ == "__main__":
    main()
