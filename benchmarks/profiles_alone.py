r"""How much ranking signal the profile vectors carry on their own: rank every item for a user by the
cosine of the user's and the item's profile vectors, no CF at all (RLMRec reports this as "semantic
embeddings alone": Amazon-book Recall@20 .0199 against LightGCN's .1411). Popularity (training
counts) is printed beside it for scale.

Same split as the training runs (RecBole's, built from the same Config and seed), the same store per
seed as ``benchmarks/ml100k.py`` (``--profiles``, ``--config-files`` as there), full ranking with
training items (and, for test, valid items) excluded, Recall@K and NDCG@K as RecBole defines them.

    OMP_NUM_THREADS=1 python benchmarks/profiles_alone.py --seeds 2020 2021 2022
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from recbole_llm import Config  # noqa: E402
from recbole_llm.build import ensure_profiles  # noqa: E402
from recbole_llm.data.loader import profile_tensors  # noqa: E402
from common import profile_pattern  # noqa: E402  (benchmarks/, the script's own folder)


def recall_ndcg(scores, truth, k):
    r"""RecBole's Recall@k and NDCG@k averaged over users (rows) with at least one true item."""
    top = scores.topk(k, dim=1).indices
    hits = torch.gather(truth, 1, top).float()
    n_true = truth.sum(dim=1).float()
    users = n_true > 0
    recall = hits.sum(dim=1)[users] / n_true[users]
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float))
    ideal = torch.cumsum(discount, 0)[(n_true[users].clamp(max=k) - 1).long()]
    ndcg = (hits[users] * discount).sum(dim=1) / ideal
    return recall.mean().item(), ndcg.mean().item()


def dense(dataset):
    return torch.from_numpy(dataset.inter_matrix(form="csr").toarray() > 0)


def evaluate(seed, dataset_name, k, profiles, config_files):
    config = Config(model="LightGCN_RLM", dataset=dataset_name, config_file_list=config_files,
                    config_dict={"seed": seed, "profile_dir": profiles.format(seed=seed), "state": "WARNING"},
                    command_line=False)  # the script's own options are not RecBole keys
    init_seed(seed, config["reproducibility"])
    train, valid, test = (d._dataset for d in data_preparation(config, create_dataset(config)))
    ensure_profiles(config, train)
    user_profile, item_profile = profile_tensors(config, train)
    seen, valid_truth, test_truth = dense(train), dense(valid), dense(test)
    rankers = {
        "profiles alone (cosine)": F.normalize(user_profile, dim=-1) @ F.normalize(item_profile, dim=-1).T,
        "popularity": seen.sum(dim=0, dtype=torch.float).expand(len(seen), -1).clone(),
    }
    rows = {}
    for name, scores in rankers.items():
        scores[:, 0] = -np.inf  # RecBole's padding item
        valid_scores = scores.masked_fill(seen, -np.inf)
        test_scores = valid_scores.masked_fill(valid_truth, -np.inf)
        rows[name] = recall_ndcg(valid_scores[1:], valid_truth[1:], k) + recall_ndcg(test_scores[1:], test_truth[1:], k)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--config-files", nargs="*", default=None, help="YAML files (e.g. another split)")
    parser.add_argument("--profiles", default=None, help="profile store of each seed (default: profiles/<dataset>-seed{seed})")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    profiles = args.profiles or profile_pattern(args.dataset)
    runs = [evaluate(seed, args.dataset, args.k, profiles, args.config_files) for seed in args.seeds]
    k = args.k
    print(f"\n{args.dataset}, seeds {args.seeds}, mean over seeds (per seed in brackets)\n")
    print(f"| ranker | valid Recall@{k} | valid NDCG@{k} | test Recall@{k} | test NDCG@{k} |")
    print("|---|---|---|---|---|")
    for name in runs[0]:
        cells = []
        for column in range(4):
            values = [run[name][column] for run in runs]
            cells.append(f"{statistics.mean(values):.4f} ({' / '.join(f'{v:.4f}' for v in values)})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
