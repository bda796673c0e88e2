r"""CPU milliseconds of the Con alignment alone (forward + backward) against ``align_sample_size``.

Random embeddings, profiles and batch ids of ml-100k's sizes (943 users, 1,682 items, batch 2048);
``align_user_negatives: batch``; one thread. The sizes are timed round by round, interleaved, and
the table gives the median round.

    OMP_NUM_THREADS=1 python benchmarks/alignment_cost.py --sample-sizes 64 128 256 512 1024
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_llm.model.alignment import ContrastiveAlignment  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-sizes", nargs="+", type=int, default=[64, 128, 256, 512, 1024])
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--items", type=int, default=1682)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--profile-dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="steps timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # Row 0 is RecBole's padding id, as in a real dataset.
    user_all = torch.randn(args.users + 1, args.embedding_dim, requires_grad=True)
    item_all = torch.randn(args.items + 1, args.embedding_dim, requires_grad=True)
    user_profile, item_profile = torch.randn(args.users + 1, args.profile_dim), torch.randn(args.items + 1, args.profile_dim)
    user = torch.randint(1, args.users + 1, (args.batch,))
    pos, neg = torch.randint(1, args.items + 1, (args.batch,)), torch.randint(1, args.items + 1, (args.batch,))
    alignments = {
        size: ContrastiveAlignment(args.profile_dim, args.embedding_dim, 0.2, "batch", size) for size in args.sample_sizes
    }

    def step(alignment):
        alignment(user_all, item_all, user, pos, neg, user_profile, item_profile).backward()

    for alignment in alignments.values():
        step(alignment)
    rounds = {size: [] for size in alignments}
    for _ in range(args.rounds):
        for size, alignment in alignments.items():
            start = time.process_time()
            for _ in range(args.steps):
                step(alignment)
            rounds[size].append((time.process_time() - start) / args.steps * 1000)
    print("| align_sample_size | ms per step (forward + backward) |")
    print("|---|---|")
    for size, times in rounds.items():
        print(f"| {size} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
