r"""
LightGCN
################################################

Reference:
    Xiangnan He et al. "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation." in SIGIR 2020.

Reference code:
    https://github.com/RUCAIBox/RecBole (``recbole/model/general_recommender/lightgcn.py``)
    https://github.com/HKUDS/RLMRec (``encoder/models/general_cf/lightgcn.py``: the layer sum, edge
    dropout and the regulariser over all parameters)
"""

import torch
from recbole.model.general_recommender.lightgcn import LightGCN as RecBoleLightGCN

from recbole_llm.model.general_recommender.graph_base import drop_edges, squared_norm


class LightGCN(RecBoleLightGCN):
    r"""RecBole's LightGCN, with three of RLMRec's training choices as keys (RecBole's by default).

    - ``layer_combination``: ``mean`` (RecBole's) averages the ``n_layers + 1`` layer embeddings,
      ``sum`` (RLMRec's) adds them. Rankings are the same; training is not: BPR's scores are
      ``(n_layers + 1)^2`` times larger with the sum while RLMRec's cosine alignment is scale-free,
      so RLMRec's weights assume the sum, and under RLMRec's protocol (patience 5 on evaluations
      every 3 epochs) RecBole's mean stops long before it converges (``results/ml-100k.md``).
    - ``edge_dropout``: each training step propagates over the normalised graph without a fresh
      random share of its non-zeros, the kept values not rescaled (RLMRec's ``keep_rate: 0.8`` is
      ``edge_dropout: 0.2``); evaluation uses the whole graph.
    - ``reg_scope``: ``batch`` (RecBole's) regularises the batch's ego embeddings, ``all`` (RLMRec's
      ``reg_params``) adds ``reg_weight`` times the squared L2 norm of every parameter, the
      alignment's MLPs and mask token included under ``LightGCN_RLM``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.layer_combination = config["layer_combination"]
        self.edge_dropout = config["edge_dropout"]
        self.reg_scope = config["reg_scope"]

    def training_adjacency(self):
        r"""The graph this step propagates over: with ``edge_dropout``, a fresh sample while training."""
        if self.training and self.edge_dropout > 0:
            return drop_edges(self.norm_adj_matrix, self.edge_dropout)
        return self.norm_adj_matrix

    def forward(self):
        adjacency = self.training_adjacency()
        all_embeddings = self.get_ego_embeddings()
        embeddings_list = [all_embeddings]
        for _ in range(self.n_layers):
            all_embeddings = torch.sparse.mm(adjacency, all_embeddings)
            embeddings_list.append(all_embeddings)
        layers = torch.stack(embeddings_list, dim=1)
        final = layers.sum(dim=1) if self.layer_combination == "sum" else layers.mean(dim=1)
        return torch.split(final, [self.n_users, self.n_items])

    def calculate_loss(self, interaction):
        if self.reg_scope == "batch":
            return super().calculate_loss(interaction)
        # Training changes the embeddings: drop the evaluation cache (as RecBole's calculate_loss).
        self.restore_user_e, self.restore_item_e = None, None
        user_all, item_all = self.forward()
        user = user_all[interaction[self.USER_ID]]
        pos_scores = torch.mul(user, item_all[interaction[self.ITEM_ID]]).sum(dim=1)
        neg_scores = torch.mul(user, item_all[interaction[self.NEG_ITEM_ID]]).sum(dim=1)
        return self.mf_loss(pos_scores, neg_scores) + self.reg_weight * squared_norm(self)
