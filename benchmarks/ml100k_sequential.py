r"""Quality and speed of SASRec, GRU4Rec, BERT4Rec vs their ``_RLM`` con and gen on ml-100k under
RecBole's sequential defaults (leave-one-out by time, full ranking, CE loss, the models' YAMLs).

Every variant trains with the same config and seeds, interleaved (seed by seed, variant by
variant), in one process on one thread; early stopping on valid NDCG@10; test Recall/NDCG @10/20
and seconds per training epoch are printed as a markdown table per backbone (mean ± std over
seeds; ratio = s/epoch over the backbone's base), with the seeds on which each aligned variant's
test NDCG@10 / Recall@20 is above the base's. Epoch time is the median over epochs of this
process's CPU time (one thread, no dataloader workers): on a shared machine it is far steadier
than wall time. On a GPU it is wall time between CUDA synchronisations instead.

The leave-one-out split does not depend on the seed, so all seeds share one profile store.

    OMP_NUM_THREADS=1 python benchmarks/ml100k_sequential.py --seeds 2020 2021 2022 --max-epochs 10
    OMP_NUM_THREADS=1 python benchmarks/ml100k_sequential.py --seeds 2020 --max-epochs 2   # speed only
    OMP_NUM_THREADS=1 python benchmarks/ml100k_sequential.py --variants GRU4Rec GRU4Rec_RLM:con:align_weight=0.1
    OMP_NUM_THREADS=1 python benchmarks/ml100k_sequential.py --groups 30 60 150   # also NDCG/Recall@10 by sequence length

``--groups`` adds the plugin's HistoryNDCG/HistoryRecall (``recbole_llm/evaluation/metrics.py``) with those
bucket bounds: a user's history is their number of training rows (targets) of the leave-one-out
split, i.e. their training sequence's length minus one.

``--record FILE`` appends each run (JSON lines); ``--table FILE ...`` prints the tables of them all.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from recbole_llm import Config  # noqa: E402
from common import parse_settings, parse_variant  # noqa: E402  (benchmarks/, the script's own folder)
from ml100k import _read_records, train_and_test  # noqa: E402

METRICS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (10, 20)]
BACKBONES = ["SASRec", "GRU4Rec", "BERT4Rec"]
BASE_CONFIG = {
    "metrics": ["Recall", "NDCG"],
    "topk": [10, 20],
    "valid_metric": "NDCG@10",
    "epochs": 300,
    "stopping_step": 10,
    "eval_step": 1,
    "show_progress": False,
    "state": "WARNING",
}


def default_variants():
    return [v for base in BACKBONES for v in (base, f"{base}_RLM:con", f"{base}_RLM:gen")]


def backbone(variant):
    return parse_variant(variant)[0].removesuffix("_RLM")


def group_keys(buckets):
    r"""Result keys of the history buckets of ``group_history_buckets: buckets`` at @10."""
    bounds = [0] + list(buckets)
    names = [f"{low + 1}-{high}" for low, high in zip(bounds, bounds[1:])] + [f"{bounds[-1] + 1}+"]
    return [f"history{m}[{name}]@10" for m in ("ndcg", "recall") for name in names]


def train_one(model_name, extra, seed, config_overrides, profile_dir, groups=None):
    checkpoint_dir = tempfile.mkdtemp(prefix="recbole_llm_bench_")
    grouped = {"metrics": ["Recall", "NDCG", "HistoryRecall", "HistoryNDCG"], "group_history_buckets": groups} if groups else {}
    config = Config(model=model_name, dataset="ml-100k",
                    config_dict={**BASE_CONFIG, **grouped, "profile_dir": profile_dir, "checkpoint_dir": checkpoint_dir,
                                 **config_overrides, **extra, "seed": seed},
                    command_line=False)  # the script's own options are not RecBole keys
    test, best_valid, epoch_seconds = train_and_test(config)
    shutil.rmtree(checkpoint_dir)
    metrics = {m: float(test[m]) for m in METRICS + (group_keys(groups) if groups else [])}
    metrics["valid ndcg@10"] = float(best_valid["ndcg@10"])
    return metrics, statistics.median(epoch_seconds), len(epoch_seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", help="default: each of SASRec GRU4Rec BERT4Rec, its _RLM:con and "
                        "its _RLM:gen (with --table: every recorded variant); a backbone's base is its reference")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--max-epochs", type=int, default=None, help="cap epochs")
    parser.add_argument("--set", nargs="*", default=[], help="extra config for all variants, key=value")
    parser.add_argument("--profiles", default=os.path.join("profiles", "ml-100k-sequential"),
                        help="profile store (default: %(default)s)")
    parser.add_argument("--groups", nargs="+", type=int, metavar="BOUND",
                        help="also test NDCG/Recall@10 by training-sequence length, buckets with these upper bounds")
    parser.add_argument("--record", help="append each run to this JSON-lines file")
    parser.add_argument("--table", nargs="+", metavar="FILE", help="print the tables of recorded runs, train nothing")
    args = parser.parse_args()
    if args.table:
        results = _read_records(args.table)
        args.variants = args.variants or list(results)
        results = {v: results[v] for v in args.variants if v in results}
        args.seeds = sorted({r[3] for runs in results.values() for r in runs})
        print_tables(results, "recorded runs")
        return
    args.variants = args.variants or default_variants()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    overrides = parse_settings(args.set)
    if args.max_epochs:
        overrides["epochs"] = args.max_epochs
    results = {v: [] for v in args.variants}
    for seed in args.seeds:
        for variant in args.variants:
            model, extra = parse_variant(variant)
            metrics, sec, epochs = train_one(model, extra, seed, overrides, args.profiles, args.groups)
            results[variant].append((metrics, sec, epochs, seed))
            if args.record:
                with open(args.record, "a") as f:
                    f.write(json.dumps({"variant": variant, "seed": seed, "set": args.set, "max_epochs": args.max_epochs,
                                        "metrics": metrics, "sec": sec, "epochs": epochs}) + "\n")
            print(f"seed {seed} {variant}: valid ndcg@10 {metrics['valid ndcg@10']:.4f} "
                  f"test recall@10 {metrics['recall@10']:.4f} ndcg@10 {metrics['ndcg@10']:.4f} "
                  f"{sec:.2f} s/epoch, {epochs} epochs", file=sys.stderr, flush=True)
    print_tables(results, f"{os.environ['OMP_NUM_THREADS']} thread(s)")


def _fmt(values):
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def print_tables(results, how):
    seeds = sorted({r[3] for runs in results.values() for r in runs})
    columns = METRICS + ["valid ndcg@10"]
    for name in dict.fromkeys(backbone(v) for v in results):
        group = {v: runs for v, runs in results.items() if backbone(v) == name}
        base = group.get(name)
        print(f"\n{name} on ml-100k (leave-one-out, full ranking), seeds {seeds}, {how}, test split, mean ± std\n")
        print("| variant | " + " | ".join(columns) + " | s/epoch | ratio | epochs | seeds above base (NDCG@10, Recall@20) |")
        print("|---" * (len(columns) + 5) + "|")
        for variant, runs in group.items():
            sec = statistics.mean(r[1] for r in runs)
            cells = [_fmt([r[0][m] for r in runs]) for m in columns]
            ratio = f"{sec / statistics.mean(r[1] for r in base):.2f}x" if base else "-"
            above = _seeds_above(runs, base) if base and variant != name else "-"
            print(f"| {variant} | " + " | ".join(cells) + f" | {sec:.2f} | {ratio} | {statistics.mean(r[2] for r in runs):.1f} | {above} |")
        for variant, runs in group.items():
            if base and variant != name:
                for metric in ("ndcg@10", "recall@20"):
                    gain = statistics.mean(r[0][metric] for r in runs) / statistics.mean(r[0][metric] for r in base) - 1
                    print(f"\n{variant}: test {metric} {gain:+.1%} over {name}", end="")
        print()
        print_group_table(group)


def print_group_table(group):
    r"""Test NDCG@10 by training-sequence length (runs made with ``--groups``), mean over seeds."""
    keys = [k for k in next(iter(group.values()))[0][0] if k.startswith("historyndcg[")]
    if not keys:
        return
    print("\nTest NDCG@10 by training-sequence length (users per bucket: RecBole's leave-one-out test users)\n")
    print("| variant | " + " | ".join(k[len("historyndcg["):-len("]@10")] for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for variant, runs in group.items():
        print(f"| {variant} | " + " | ".join(_fmt([r[0][k] for r in runs]) for k in keys) + " |")


def _seeds_above(runs, base):
    by_seed = {r[3]: r[0] for r in base}
    paired = [(r[0], by_seed[r[3]]) for r in runs if r[3] in by_seed]
    counts = [sum(m[metric] > b[metric] for m, b in paired) for metric in ("ndcg@10", "recall@20")]
    return f"{counts[0]}/{len(paired)}, {counts[1]}/{len(paired)}"


if __name__ == "__main__":
    main()
