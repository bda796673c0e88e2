"""Train and evaluate a RecBole or recbole-llm model, e.g. ``python run_recbole_llm.py --model=LightGCN_RLM``.

Any RecBole key can be given as ``--key=value``; it is read by the Config as in ``run_recbole.py``.
With ``--params_file`` it searches hyperparameters instead (``--tool=hyperopt|ray``, see recbole_llm/tuning.py).
"""

import argparse
import sys

from recbole_llm.checks import SettingError
from recbole_llm.profiles.store import ProfileStoreError
from recbole_llm.quick_start import run
from recbole_llm.tuning import run_hyper, run_ray_tune

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", "-m", type=str, default="LightGCN_RLM", help="model name, e.g. LightGCN_RLM or LightGCN")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    parser.add_argument("--checkpoint", type=str, default=None, help="resume training from this checkpoint file")
    parser.add_argument("--nproc", type=int, default=1, help="processes per machine")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default="5678", help="port of the rank-0 machine")
    parser.add_argument("--world_size", type=int, default=-1, help="total number of processes")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    parser.add_argument("--params_file", type=str, default=None, help="search this space instead of one run")
    parser.add_argument("--tool", type=str.lower, choices=["hyperopt", "ray"], default="hyperopt", help="search with RecBole's HyperTuning or Ray Tune")
    parser.add_argument("--algo", choices=["exhaustive", "random", "bayes"], default="exhaustive", help="search algorithm")
    parser.add_argument("--max_evals", type=int, default=100, help="trials of random/bayes search")
    parser.add_argument("--output_file", type=str, default="hyper.result", help="search result file")
    parser.add_argument("--ray_address", type=str, default=None, help="Ray cluster address; default a local one")
    parser.add_argument("--cpus_per_trial", type=float, default=1, help="Ray: CPUs per trial")
    parser.add_argument("--gpus_per_trial", type=float, default=0, help="Ray: GPUs per trial")
    args, _ = parser.parse_known_args()

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    search = dict(params_file=args.params_file, config_file_list=config_file_list, algo=args.algo, max_evals=args.max_evals, output_file=args.output_file)
    try:
        if args.params_file and args.tool == "ray":
            run_ray_tune(args.model, args.dataset, **search, address=args.ray_address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial)
        elif args.params_file:
            run_hyper(args.model, args.dataset, **search)
        else:
            run(args.model, args.dataset, config_file_list=config_file_list, nproc=args.nproc, world_size=args.world_size,
                ip=args.ip, port=args.port, group_offset=args.group_offset, checkpoint=args.checkpoint)
    except (SettingError, ProfileStoreError) as e:  # a setting, a data file or the store: the message names it and the fix
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
