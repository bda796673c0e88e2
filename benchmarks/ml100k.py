r"""Quality and speed of LightGCN vs LightGCN_RLM (con, gen) on RecBole's ml-100k.

Every variant trains with the same config and seeds, interleaved (seed by seed), in one process on
one thread; early stopping on valid Recall@20; test Recall/NDCG @5/10/20, the best valid Recall@20
and seconds per training epoch are printed as a markdown table (mean ± std over seeds; ratio =
s/epoch over the first variant). Epoch time is the median over epochs of this process's CPU time
(one thread, no dataloader workers): on a shared machine it is far steadier than wall time. On a
GPU (RecBole's ``use_gpu``, on by default when CUDA is there) it is wall time between CUDA
synchronisations instead, since the CPU only waits for the device.

    OMP_NUM_THREADS=1 python benchmarks/ml100k.py --seeds 2020 2021 2022
    OMP_NUM_THREADS=1 python benchmarks/ml100k.py --max-epochs 5 --seeds 1   # speed only

Runs can be spread over processes (e.g. one per variant and seed on a GPU machine): each appends
its runs to ``--record FILE`` (JSON lines) and ``--table FILE ...`` prints the table of them all.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

from recbole_llm import Config, get_model  # noqa: E402
from recbole_llm.build import ensure_profiles  # noqa: E402
from recbole_llm.trainer import get_trainer  # noqa: E402
from common import parse_settings, parse_variant, profile_pattern, synchronize  # noqa: E402  (benchmarks/, the script's own folder)

METRICS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)]
BASE_CONFIG = {
    "metrics": ["Recall", "NDCG"],
    "topk": [5, 10, 20],
    "valid_metric": "Recall@20",
    "epochs": 300,
    # Aligned models score high in the first epochs, then dip while BPR takes over; a patience of
    # 10 epochs stopped some of them inside that dip (seen on seeds 2020 and 2023), so 30.
    "stopping_step": 30,
    "eval_step": 1,
    "train_batch_size": 2048,
    "learning_rate": 0.001,
    "show_progress": False,
    "state": "WARNING",
}


def train_one(model_name, extra, seed, config_overrides, profiles, config_files):
    # One profile store per seed: user profiles depend on the seed's training split.
    store = {"profile_dir": profiles.format(seed=seed)}
    # RecBole names checkpoints by model and second: parallel runs need their own directory.
    store["checkpoint_dir"] = tempfile.mkdtemp(prefix="recbole_llm_bench_")
    config = Config(model=model_name, dataset="ml-100k", config_file_list=config_files,
                    config_dict={**BASE_CONFIG, **store, **config_overrides, **extra, "seed": seed},
                    command_line=False)  # the script's own options are not RecBole keys
    test, best_valid, epoch_seconds = train_and_test(config)
    shutil.rmtree(config["checkpoint_dir"])
    metrics = {m: float(test[m]) for m in METRICS}
    metrics["valid recall@20"] = float(best_valid["recall@20"])
    return metrics, statistics.median(epoch_seconds), len(epoch_seconds)


def train_and_test(config):
    r"""Train ``config``'s model as a run does (profiles prepared first), timing each training epoch;
    returns the test result of the best-valid checkpoint, the best valid result, and the epochs' seconds."""
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    ensure_profiles(config, train_data._dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    epoch_seconds = []
    train_epoch = trainer._train_epoch
    clock = _clock(config["device"])

    def timed_train_epoch(*args, **kwargs):
        start = clock()
        result = train_epoch(*args, **kwargs)
        epoch_seconds.append(clock() - start)
        return result

    trainer._train_epoch = timed_train_epoch
    _, best_valid = trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False)
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    return test, best_valid, epoch_seconds


def _clock(device):
    if device.type != "cuda":
        return time.process_time

    def cuda_wall_time():
        synchronize(device)
        return time.perf_counter()

    return cuda_wall_time


def _read_records(paths):
    results = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                run = json.loads(line)
                results.setdefault(run["variant"], []).append((run["metrics"], run["sec"], run["epochs"], run["seed"]))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", help="default: LightGCN LightGCN_RLM:con LightGCN_RLM:gen "
                        "(with --table: every recorded variant); the first is the reference of the ratios")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--max-epochs", type=int, default=None, help="cap epochs (speed runs)")
    parser.add_argument("--config-files", nargs="*", default=None, help="YAML files for all variants (e.g. another split)")
    parser.add_argument("--set", nargs="*", default=[], help="extra config for all variants, key=value")
    parser.add_argument("--profiles", default=profile_pattern("ml-100k"),
                        help="profile store of each seed (default: %(default)s); another split needs its own")
    parser.add_argument("--record", help="append each run to this JSON-lines file")
    parser.add_argument("--table", nargs="+", metavar="FILE", help="print the table of recorded runs, train nothing")
    args = parser.parse_args()
    if args.table:
        results = _read_records(args.table)
        args.variants = args.variants or list(results)
        missing = [v for v in args.variants if v not in results]
        if missing:
            parser.error(f"no recorded runs of {missing} in {args.table}")
        results = {v: results[v] for v in args.variants}
        args.seeds = sorted({r[3] for runs in results.values() for r in runs})
        print_table(results, args, "recorded runs")
        return
    args.variants = args.variants or ["LightGCN", "LightGCN_RLM:con", "LightGCN_RLM:gen"]
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    overrides = parse_settings(args.set)
    if args.max_epochs:
        overrides["epochs"] = args.max_epochs
    results = {v: [] for v in args.variants}
    for seed in args.seeds:
        for variant in args.variants:
            model, extra = parse_variant(variant)
            metrics, sec, epochs = train_one(model, extra, seed, overrides, args.profiles, args.config_files)
            results[variant].append((metrics, sec, epochs, seed))
            if args.record:
                with open(args.record, "a") as f:
                    f.write(json.dumps({"variant": variant, "seed": seed, "config_files": args.config_files, "set": args.set, "metrics": metrics, "sec": sec, "epochs": epochs}) + "\n")
            print(f"seed {seed} {variant}: valid recall@20 {metrics['valid recall@20']:.4f} "
                  f"test recall@20 {metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f} "
                  f"{sec:.3f} s/epoch, {epochs} epochs", file=sys.stderr, flush=True)
    print_table(results, args, f"{os.environ['OMP_NUM_THREADS']} thread(s)")


def _fmt(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def print_table(results, args, how):
    first = statistics.mean(r[1] for r in results[args.variants[0]])
    print(f"\nml-100k, seeds {args.seeds}, {how}, test split, mean ± std\n")
    columns = METRICS + ["valid recall@20"]
    print("| variant | " + " | ".join(columns) + " | s/epoch | ratio | epochs |")
    print("|---" * (len(columns) + 4) + "|")
    for variant, runs in results.items():
        sec = statistics.mean(r[1] for r in runs)
        cells = [_fmt([r[0][m] for r in runs]) for m in columns]
        epochs = statistics.mean(r[2] for r in runs)
        print(f"| {variant} | " + " | ".join(cells) + f" | {sec:.3f} | {sec / first:.2f}x | {epochs:.0f} |")
    base = results[args.variants[0]]
    for variant, runs in list(results.items())[1:]:
        gain = statistics.mean(r[0]["recall@20"] for r in runs) / statistics.mean(r[0]["recall@20"] for r in base) - 1
        print(f"\n{variant}: test Recall@20 {gain:+.1%} over {args.variants[0]}", end="")
    print()


if __name__ == "__main__":
    main()
