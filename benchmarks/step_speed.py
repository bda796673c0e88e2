r"""CPU milliseconds per training step of every backbone, base vs its ``_RLM`` variants, on ml-100k.

One step = ``calculate_loss``, backward and an Adam step, on the same batches for every variant.
The variants of a backbone are interleaved (round by round, each round timing ``--steps`` steps of
each variant) so that the shared machine's load drifts alike for all; the table gives the median of
the rounds' per-step means and the ratio to the base. Time is this process's CPU time on one thread
(``OMP_NUM_THREADS=1``): steadier than wall time on a shared machine.

    OMP_NUM_THREADS=1 python benchmarks/step_speed.py --models LightGCN SGL NCL --set num_clusters=100 \
        --variants con con:align_user_negatives=batch:align_sample_size=128:profile_reduce_dim=64

A variant is ``align[:key=value ...]`` applied to ``<Model>_RLM``; the base is always measured first.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.data.transform import construct_transform  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from recbole_llm import Config, get_model  # noqa: E402
from recbole_llm.build import ensure_profiles  # noqa: E402
from common import parse_settings, parse_variant, training_step  # noqa: E402  (benchmarks/, the script's own folder)

MODELS = ["LightGCN", "BPR", "GCCF", "NGCF", "SGL", "SimGCL", "NCL", "SpectralCF", "DCCF", "AutoCF"]
BASE_CONFIG = {"train_batch_size": 2048, "state": "WARNING", "show_progress": False}


def config_for(model_name, extra, args):
    config_dict = {**BASE_CONFIG, "seed": args.seed, "profile_dir": args.profiles, **args.extra, **extra}
    return Config(model=model_name, dataset=args.dataset, config_dict=config_dict, command_line=False)


def build(model_name, config, dataset):
    init_seed(config["seed"], True)
    model = get_model(model_name)(config, dataset)
    model.train()
    if hasattr(model, "e_step"):  # NCL's prototypes, as its trainer computes them before an epoch
        model.e_step()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def time_backbone(base, variants, args):
    specs = [(base, {})] + [parse_variant(f"{base}_RLM:{variant}") for variant in variants]
    configs = [config_for(name, extra, args) for name, extra in specs]
    init_seed(args.seed, True)
    train = data_preparation(configs[0], create_dataset(configs[0]))[0]
    for config in configs[1:]:
        construct_transform(config)  # the keys a transform adds to its config (BERT4Rec's MASK_ITEM_SEQ ...)
    for config in configs:
        ensure_profiles(config, train._dataset)
    batches = [batch for _, batch in zip(range(args.steps), train)]
    runs = [build(name, config, train._dataset) for (name, _), config in zip(specs, configs)]
    for model, optimizer in runs:  # warm-up: first-call allocations and lazy initialisation
        training_step(model, optimizer, batches[0])
    rounds = [[] for _ in runs]
    for _ in range(args.rounds):
        for times, (model, optimizer) in zip(rounds, runs):
            start = time.process_time()
            for batch in batches:
                training_step(model, optimizer, batch)
            times.append((time.process_time() - start) / len(batches) * 1000)
    return [statistics.median(times) for times in rounds]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--variants", nargs="+", default=["con", "gen"], help="align[:key=value ...] of <Model>_RLM")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--profiles", default="profiles/ml-100k-seed2020", help="profile store (built if missing)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--steps", type=int, default=8, help="batches timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[], help="extra config for all, key=value (num_clusters=100 for NCL)")
    args = parser.parse_args()
    args.extra = parse_settings(args.set)
    torch.set_num_threads(1)
    print("| backbone | base ms/step | " + " | ".join(f"{v} ms/step (ratio)" for v in args.variants) + " |")
    print("|---|---|" + "---|" * len(args.variants))
    for base in args.models:
        base_ms, *variant_ms = time_backbone(base, args.variants, args)
        cells = " | ".join(f"{ms:.1f} ({ms / base_ms:.2f}x)" for ms in variant_ms)
        print(f"| {base} | {base_ms:.1f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
