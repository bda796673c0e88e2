"""Train and evaluate a RecBole or recbole-llm model, e.g. ``python run_recbole_llm.py --model=LightGCN_RLM``.

Any RecBole key can be given as ``--key=value``; it is read by the Config as in ``run_recbole.py``.
"""

import argparse

from recbole_llm.quick_start import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", "-m", type=str, default="LightGCN_RLM", help="model name, e.g. LightGCN_RLM or LightGCN")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    parser.add_argument("--nproc", type=int, default=1, help="processes per machine")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default="5678", help="port of the rank-0 machine")
    parser.add_argument("--world_size", type=int, default=-1, help="total number of processes")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    args, _ = parser.parse_known_args()

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    run(
        args.model,
        args.dataset,
        config_file_list=config_file_list,
        nproc=args.nproc,
        world_size=args.world_size,
        ip=args.ip,
        port=args.port,
        group_offset=args.group_offset,
    )
