r"""Speed and memory of LightGCN vs LightGCN_RLM (con, gen) on RLMRec's real Amazon-book split, CPU, one thread
(or on a GPU, when RecBole finds one: wall seconds between CUDA synchronisations and peak GPU memory).

The split (11,000 users, 9,332 items, 120,464 training pairs) is imported with
``recbole_llm.data.import_rlmrec`` from an RLMRec folder that holds it plus random 1536-d float32
profile vectors (the size of the paper's ada-002 vectors; only speed and memory are measured here).
Every variant has the same backbone settings (3 layers, embedding 32, batch 4096: the rlmrec-amazon-book
protocol) and runs in its own process, so peak memory is per variant; variants are interleaved
round by round so that load from other processes spreads over all of them.

1. Seconds per training epoch (RecBole's own ``Trainer._train_epoch``) and peak resident memory.
2. How the alignment's cost per training step grows when the user count grows 10x: a synthetic
   copy of the split where every user appears 10 times (each copy keeps a random 80% of the user's
   pairs), with random vectors for the 110,000 users. ``align_user_negatives: all`` (RLMRec's: each
   batch user against ALL users' projected profiles) vs ``batch`` (the batch's users only); Gen
   reconstructing all masked nodes (RLMRec's) vs a sample of 1,024 of them (``mask_sample_size``).

    OMP_NUM_THREADS=1 python benchmarks/scale_amazon.py
    OMP_NUM_THREADS=1 python benchmarks/scale_amazon.py --rounds 1 --no-scale   # quick look
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from recbole_llm.data.import_rlmrec import SPLITS, import_rlmrec, read_matrix  # noqa: E402
from recbole_llm.trainer import get_trainer  # noqa: E402
from common import parse_variant, synchronize, training_step  # noqa: E402  (benchmarks/, the script's own folder)

DATASET = "rlmrec-amazon-book"
PROTOCOL = os.path.join(REPO, "properties", "dataset", f"{DATASET}.yaml")
VARIANTS = [
    "LightGCN",
    "LightGCN_RLM:con",
    "LightGCN_RLM:con:align_user_negatives=batch",
    "LightGCN_RLM:gen",
    "LightGCN_RLM:gen:mask_sample_size=1024",
]
BACKBONE = {"n_layers": 3}  # the same for every variant, so that only the alignment differs


# -- data -------------------------------------------------------------------------------------------


def _dump(obj, path):
    import pickle

    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def prepare(src, work, factor, dim):
    r"""Import ``src`` (users copied ``factor`` times when > 1) with random profile vectors; returns
    (data_path, profile_dir), reused when an earlier call left them in ``work``."""
    root = os.path.join(work, f"x{factor}-d{dim}")
    data_path, store = os.path.join(root, "data"), os.path.join(root, "profiles")
    if os.path.isfile(os.path.join(store, "manifest.json")):
        return data_path, store
    folder = os.path.join(root, "rlmrec")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    matrices = {filename: read_matrix(os.path.join(src, filename)) for _, filename in SPLITS}
    if factor > 1:
        matrices = {f: _copy_users(m, factor, rng, keep_one=(f == "trn_mat.pkl")) for f, m in matrices.items()}
    for filename, matrix in matrices.items():
        _dump(matrix.tocoo(), os.path.join(folder, filename))
    n_users, n_items = matrices["trn_mat.pkl"].shape
    _dump(rng.standard_normal((n_users, dim), dtype=np.float32), os.path.join(folder, "usr_emb_np.pkl"))
    _dump(rng.standard_normal((n_items, dim), dtype=np.float32), os.path.join(folder, "itm_emb_np.pkl"))
    if factor == 1:  # the real raw ids
        for name in os.listdir(src):
            if name.endswith(".json"):
                os.symlink(os.path.abspath(os.path.join(src, name)), os.path.join(folder, name))
    print(f"importing {folder} ({n_users} users) ...", file=sys.stderr, flush=True)
    import_rlmrec(folder, DATASET if factor == 1 else f"{DATASET}-x{factor}", data_path, profile_dir=store, force=True)
    for name in os.listdir(folder):  # the pickles served their purpose; the store holds the vectors
        os.remove(os.path.join(folder, name))
    return data_path, store


def _copy_users(matrix, factor, rng, keep_one):
    r"""User u becomes users u*factor .. u*factor+factor-1; copy 0 keeps all pairs, the others a
    random 80% (at least the user's first pair where ``keep_one``)."""
    matrix = matrix.tocsr()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    first = np.zeros(matrix.nnz, dtype=bool)
    first[matrix.indptr[:-1][np.diff(matrix.indptr) > 0]] = True
    parts_rows, parts_cols = [], []
    for copy in range(factor):
        keep = np.ones(matrix.nnz, dtype=bool) if copy == 0 else rng.random(matrix.nnz) < 0.8
        if keep_one:
            keep |= first
        parts_rows.append(rows[keep] * factor + copy)
        parts_cols.append(matrix.indices[keep])
    rows, cols = np.concatenate(parts_rows), np.concatenate(parts_cols)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(matrix.shape[0] * factor, matrix.shape[1]))


# -- one variant, in its own process ----------------------------------------------------------------


def _rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss():
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM), so it then measures training alone.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(spec):
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_llm import Config, get_model
    from recbole_llm.build import ensure_profiles

    torch.set_num_threads(1)
    model_name, extra = parse_variant(spec["variant"])
    config_dict = {
        **BACKBONE,
        **extra,
        "data_path": spec["data_path"],
        "profile_dir": spec["profile_dir"],
        "show_progress": False,
        "state": "WARNING",
        "checkpoint_dir": tempfile.mkdtemp(prefix="scale-amazon-"),
    }
    # command_line=False: the script's own options are not RecBole keys.
    config = Config(model=model_name, dataset=spec["dataset"], config_file_list=[PROTOCOL], config_dict=config_dict,
                    command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    ensure_profiles(config, train_data._dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result = {"users": train_data._dataset.user_num - 1, "rss_before_mb": _rss_mb("VmRSS"),
              "peak_load_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    result["peak_reset"] = _reset_peak_rss()
    result["device"] = config["device"].type
    if spec["mode"] == "epochs":
        result["seconds"], result["cpu_seconds"] = [], []
        for epoch in range(spec["epochs"]):
            start, cpu_start = time.perf_counter(), time.process_time()
            trainer._train_epoch(train_data, epoch, show_progress=False)
            synchronize(config["device"])
            result["seconds"].append(time.perf_counter() - start)
            result["cpu_seconds"].append(time.process_time() - cpu_start)
    else:
        result["seconds"], result["cpu_seconds"] = _time_steps(model, trainer.optimizer, train_data, spec["steps"])
    result["peak_train_mb"] = _rss_mb("VmHWM")
    if config["device"].type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(config["device"]) / 2**20
    print(json.dumps(result))


def _time_steps(model, optimizer, train_data, steps):
    r"""Wall and CPU seconds of each of ``steps`` training steps (after one warm-up step), as the
    Trainer does them."""
    model.train()
    seconds, cpu_seconds = [], []
    for n, interaction in enumerate(train_data):
        if n > steps:
            break
        start, cpu_start = time.perf_counter(), time.process_time()
        training_step(model, optimizer, interaction)
        if n > 0:
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
    return seconds, cpu_seconds


def run_child(spec):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=spec["cwd"])
    if done.returncode != 0:
        raise RuntimeError(f"{spec['variant']} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the tables ---------------------------------------------------------------------------------------


def measure(variants, rounds, base_spec, label):
    r"""Run every variant ``rounds`` times, interleaved; returns the child results per variant."""
    runs = {v: [] for v in variants}
    for r in range(rounds):
        for variant in variants:
            result = run_child({**base_spec, "variant": variant})
            runs[variant].append(result)
            print(f"{label} round {r + 1} {variant}: {[round(s, 3) for s in result['seconds']]} s wall, "
                  f"{[round(s, 3) for s in result['cpu_seconds']]} s CPU, "
                  f"peak {max(result['peak_load_mb'], result['peak_train_mb']):.0f} MB", file=sys.stderr, flush=True)
    return runs


def _median(runs, key="cpu_seconds"):
    return statistics.median(s for run in runs for s in run[key])


def print_epoch_table(runs, args):
    if runs[args.variants[0]][0]["device"] == "cuda":
        return _print_gpu_epoch_table(runs, args)
    base = _median(runs[args.variants[0]])
    print(f"\n### Seconds per training epoch and peak memory, {DATASET} (11,000 users, 9,332 items, "
          f"120,464 training pairs), {args.dim}-d profiles, CPU, 1 thread\n")
    print(f"Median over {args.rounds} rounds x {args.epochs} epochs per variant (variants interleaved); CPU seconds "
          "of the process (robust to other load on the machine) and wall seconds.\n")
    print("| variant | CPU s/epoch | x base | wall s/epoch | peak RSS (MB) | RSS before training (MB) | training peak - before (MB) |")
    print("|---|---|---|---|---|---|---|")
    for variant, vruns in runs.items():
        sec = _median(vruns)
        wall = _median(vruns, "seconds")
        peak = max(max(r["peak_load_mb"], r["peak_train_mb"]) for r in vruns)
        before = statistics.median(r["rss_before_mb"] for r in vruns)
        train_peak = statistics.median(r["peak_train_mb"] - r["rss_before_mb"] for r in vruns)
        print(f"| {variant} | {sec:.2f} | {sec / base:.2f}x | {wall:.2f} | {peak:.0f} | {before:.0f} | {train_peak:.0f} |")


def _print_gpu_epoch_table(runs, args):
    base = _median(runs[args.variants[0]], "seconds")
    print(f"\n### Seconds per training epoch and peak GPU memory, {DATASET}, {args.dim}-d profiles, GPU "
          "(RecBole's dataloader on 1 CPU thread)\n")
    print(f"Median wall seconds over {args.rounds} rounds x {args.epochs} epochs per variant (variants interleaved).\n")
    print("| variant | wall s/epoch | x base | peak GPU memory allocated (MB) |")
    print("|---|---|---|---|")
    for variant, vruns in runs.items():
        sec = _median(vruns, "seconds")
        gpu = max(r["gpu_peak_mb"] for r in vruns)
        print(f"| {variant} | {sec:.3f} | {sec / base:.2f}x | {gpu:.0f} |")


def print_scale_table(scaled, args):
    factors = sorted(scaled)
    print(f"\n### Alignment cost per training step when users grow {factors[-1]}x (synthetic copies), "
          f"batch 4096, {args.dim}-d profiles, CPU, 1 thread\n")
    print(f"Median CPU ms per step over {args.scale_rounds} round(s) x {args.steps} steps (after a warm-up step); "
          "alignment = variant - LightGCN.\n")
    users = " | ".join(f"{scaled[f][args.variants[0]][0]['users']:,} users" for f in factors)
    print(f"| variant | step ms: {users} | growth | alignment ms: {users} | growth | training peak - before (MB): {users} |")
    print("|---|" + "---|" * (2 * len(factors) + 2 + len(factors)))
    for variant in args.variants:
        step = [1000 * _median(scaled[f][variant]) for f in factors]
        base = [1000 * _median(scaled[f][args.variants[0]]) for f in factors]
        align = [s - b for s, b in zip(step, base)]
        mem = [statistics.median(r["peak_train_mb"] - r["rss_before_mb"] for r in scaled[f][variant]) for f in factors]
        align_cells = " | ".join(f"{a:.0f}" for a in align) if variant != args.variants[0] else " | ".join("-" for _ in factors)
        align_growth = f"{align[-1] / align[0]:.1f}x" if variant != args.variants[0] and align[0] > 0 else "-"
        print(f"| {variant} | " + " | ".join(f"{s:.0f}" for s in step) + f" | {step[-1] / step[0]:.1f}x | {align_cells} | "
              f"{align_growth} | " + " | ".join(f"{m:.0f}" for m in mem) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default="/work/shared/data/rlmrec/amazon-book", help="RLMRec Amazon-book folder")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "recbole_llm_scale"), help="imported data (reused)")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help="first = the base the ratios refer to")
    parser.add_argument("--dim", type=int, default=1536, help="profile vector size")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the epoch table")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant, round and scale")
    parser.add_argument("--scale-rounds", type=int, default=1, help="interleaved rounds of the user-growth table")
    parser.add_argument("--factor", type=int, default=10, help="user growth of the scale test")
    parser.add_argument("--no-scale", action="store_true", help="skip the user-growth test")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    cwd = tempfile.mkdtemp(prefix="scale-amazon-run-")  # RecBole writes log/ there
    data_path, store = prepare(args.src, args.work, 1, args.dim)
    spec = {"cwd": cwd, "data_path": data_path, "profile_dir": store, "dataset": DATASET}
    epochs = measure(args.variants, args.rounds, {**spec, "mode": "epochs", "epochs": args.epochs}, "epoch")
    scaled = {}
    if not args.no_scale:
        scaled[1] = measure(args.variants, args.scale_rounds, {**spec, "mode": "steps", "steps": args.steps}, "x1")
        data_path, store = prepare(args.src, args.work, args.factor, args.dim)
        spec = {"cwd": cwd, "data_path": data_path, "profile_dir": store, "dataset": f"{DATASET}-x{args.factor}"}
        scaled[args.factor] = measure(args.variants, args.scale_rounds, {**spec, "mode": "steps", "steps": args.steps}, f"x{args.factor}")
    print_epoch_table(epochs, args)
    if scaled:
        print_scale_table(scaled, args)


if __name__ == "__main__":
    main()
