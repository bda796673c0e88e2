r"""
DCCF
################################################

Reference:
    Xubin Ren et al. "Disentangled Contrastive Collaborative Filtering." in SIGIR 2023.

Reference code:
    https://github.com/HKUDS/DCCF
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_llm.model.loss import info_nce
from recbole_llm.model.general_recommender.graph_base import GraphRecommender, bipartite_edges


class DCCF(GraphRecommender):
    r"""DCCF: graph propagation plus intent-aware aggregation and adaptive (learned) augmentations.

    Each layer ``l`` computes from ``E^l`` four views:

    - ``Z``: graph message passing ``G E^l`` with ``G = D^{-1/2} A D^{-1/2}``;
    - ``R``: intent-aware aggregation ``softmax(E^l W) W^T`` with ``intent_num`` global intent
      prototypes ``W`` (one set for users, one for items);
    - ``H^beta`` / ``H^gamma``: message passing over the adaptive graphs whose edge weights are
      ``(cos(z_h, z_t) + 1) / 2`` of the ``Z`` / ``R`` views, row-normalised (``D^{-1} A_alpha``);

    and ``E^{l+1} = Z + R + H^beta + H^gamma + E^l``. The final embedding sums all layers. The
    contrastive loss, per layer, is an InfoNCE (temperature ``cl_temperature``) between ``Z`` and
    each of the three other views, over the batch's distinct users and distinct positive items
    (in-batch negatives), averaged per set.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.intent_num = config["intent_num"]
        self.cl_weight = config["cl_weight"]
        self.cl_temperature = config["cl_temperature"]
        self.user_intent = nn.Parameter(torch.empty(self.embedding_size, self.intent_num))
        self.item_intent = nn.Parameter(torch.empty(self.embedding_size, self.intent_num))
        nn.init.xavier_uniform_(self.user_intent)
        nn.init.xavier_uniform_(self.item_intent)
        # Edge list of the graph (both directions, no self-loops) for the adaptive augmentations.
        self.edge_heads, self.edge_tails = bipartite_edges(self.n_users, self.n_items, self.edge_users, self.edge_items)
        self.edge_index = torch.stack([self.edge_heads, self.edge_tails])

    def intent_aggregation(self, embeddings):
        r"""``softmax(E W) W^T`` for users and items with their own intent prototypes."""
        users, items = self.split(embeddings)
        user_intents = torch.softmax(users @ self.user_intent, dim=1) @ self.user_intent.T
        item_intents = torch.softmax(items @ self.item_intent, dim=1) @ self.item_intent.T
        return torch.cat([user_intents, item_intents], dim=0)

    def adaptive_weights(self, embeddings):
        r"""Edge weights of the adaptive graph: ``(cos(e_h, e_t) + 1) / 2``, divided by each head's sum."""
        embeddings = F.normalize(embeddings, dim=1)
        alpha = ((embeddings[self.edge_heads] * embeddings[self.edge_tails]).sum(dim=1) + 1) / 2
        row_sum = torch.zeros(len(embeddings), device=alpha.device, dtype=alpha.dtype).index_add_(0, self.edge_heads, alpha)
        return alpha / row_sum.clamp_min(1e-12)[self.edge_heads]

    def adaptive_propagate(self, view, embeddings):
        r"""``A_alpha(view) @ embeddings`` with the adaptive graph of ``view``."""
        n_nodes = len(embeddings)
        adjacency = torch.sparse_coo_tensor(self.edge_index, self.adaptive_weights(view), (n_nodes, n_nodes))
        return torch.sparse.mm(adjacency, embeddings)

    def forward(self):
        all_embeddings = self.get_ego_embeddings()
        embeddings_list = [all_embeddings]
        views = {"gnn": [], "intent": [], "gnn_adaptive": [], "intent_adaptive": []}
        for _ in range(self.n_layers):
            gnn = torch.sparse.mm(self.norm_adj_matrix, all_embeddings)
            intent = self.intent_aggregation(all_embeddings)
            gnn_adaptive = self.adaptive_propagate(gnn, all_embeddings)
            intent_adaptive = self.adaptive_propagate(intent, all_embeddings)
            for name, view in zip(views, (gnn, intent, gnn_adaptive, intent_adaptive)):
                views[name].append(view)
            all_embeddings = gnn + intent + gnn_adaptive + intent_adaptive + all_embeddings
            embeddings_list.append(all_embeddings)
        user_all, item_all = self.split(torch.stack(embeddings_list, dim=1).sum(dim=1))
        return user_all, item_all, views

    def cl_loss(self, views, users, items):
        r"""Per layer, InfoNCE of the ``gnn`` view against each other view (see the class docstring)."""
        users, items = torch.unique(users), torch.unique(items)
        loss = 0.0
        for layer, gnn in enumerate(views["gnn"]):
            gnn_users, gnn_items = self.split(gnn)
            for name in ("intent", "gnn_adaptive", "intent_adaptive"):
                view_users, view_items = self.split(views[name][layer])
                loss = loss + info_nce(gnn_users[users], view_users[users], self.cl_temperature).mean()
                loss = loss + info_nce(gnn_items[items], view_items[items], self.cl_temperature).mean()
        return loss

    def calculate_loss(self, interaction):
        self.clear_restored()
        user_all, item_all, views = self.forward()
        bpr_loss = self.bpr_loss(user_all, item_all, interaction, self.user_intent, self.item_intent)
        cl_loss = self.cl_loss(views, interaction[self.USER_ID], interaction[self.ITEM_ID])
        return bpr_loss, self.cl_weight * cl_loss
