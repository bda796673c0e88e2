r"""RecBole's ``data_preparation`` with one option: training negatives drawn only among warm items.

RecBole draws a training negative uniformly among ALL items (or, by popularity, among the items of
every split, valid and test included). Under a cold-start split (:mod:`recbole_llm.data.cold_split`)
that would train the held-out items as negatives, and the popularity draw would read valid/test
counts. With ``neg_sample_cold_items: false`` the training sampler draws only among items that
have a training interaction (uniformly, or by their TRAINING popularity); validation and test are
RecBole's, unchanged. The plugin's entry points (``run_recbole_llm``, tuning, checkpoint reloads)
prepare their data here.
"""

import numpy as np
import torch
from recbole.data import data_preparation as recbole_data_preparation
from recbole.sampler import Sampler


class WarmItemSampler(Sampler):
    r"""RecBole's training ``Sampler`` over the training split alone, drawing among its items only."""

    def __init__(self, train_dataset, distribution="uniform", alpha=1.0):
        items = train_dataset.inter_feat[train_dataset.iid_field]
        self.warm_items = torch.unique(items).numpy()
        if len(self.warm_items) == 0:
            raise ValueError("neg_sample_cold_items=false: the training split has no interaction to draw negatives from")
        super().__init__(["train"], [train_dataset], distribution, alpha)

    def _uni_sampling(self, sample_num):
        return self.warm_items[np.random.randint(0, len(self.warm_items), sample_num)]


def data_preparation(config, dataset):
    r"""``recbole.data.data_preparation``, then the warm-only training sampler if configured."""
    train_data, valid_data, test_data = recbole_data_preparation(config, dataset)
    if not config["neg_sample_cold_items"] and getattr(train_data, "_sampler", None) is not None:
        args = config["train_neg_sample_args"]
        train_data._sampler = WarmItemSampler(train_data._dataset, args["distribution"], args["alpha"]).set_phase("train")
    return train_data, valid_data, test_data
