r"""
LightGCN
################################################

Reference:
    Xiangnan He et al. "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation." in SIGIR 2020.

Reference code:
    https://github.com/RUCAIBox/RecBole (``recbole/model/general_recommender/lightgcn.py``)
    https://github.com/HKUDS/RLMRec (``encoder/models/general_cf/lightgcn.py``: the layer sum)
"""

from recbole.model.general_recommender.lightgcn import LightGCN as RecBoleLightGCN

LAYER_COMBINATIONS = ("mean", "sum")


class LightGCN(RecBoleLightGCN):
    r"""RecBole's LightGCN with a choice of layer combination (``layer_combination``).

    ``mean`` (default, RecBole's): the final embedding is the mean of the ``n_layers + 1`` layer
    embeddings. ``sum``: their sum, as RLMRec's LightGCN.
    Rankings are the same; training is not: BPR's scores are ``(n_layers + 1)^2`` times larger with
    the sum while RLMRec's cosine alignment is scale-free, so RLMRec's weights assume the sum, and
    under RLMRec's protocol (patience 5 on evaluations every 3 epochs) RecBole's mean stops long
    before it converges (``results/ml-100k.md``, ``results/amazon-book.md``).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.layer_combination = config["layer_combination"]
        if self.layer_combination not in LAYER_COMBINATIONS:
            raise ValueError(f"layer_combination must be one of {LAYER_COMBINATIONS}, got {self.layer_combination!r}")

    def forward(self):
        users, items = super().forward()
        if self.layer_combination == "sum":
            # RecBole's forward averages the layers: their sum is that mean times their count.
            return users * (self.n_layers + 1), items * (self.n_layers + 1)
        return users, items
