r"""
SGL
################################################

Reference:
    Jiancan Wu et al. "Self-supervised Graph Learning for Recommendation." in SIGIR 2021.

Reference code:
    https://github.com/RUCAIBox/RecBole (``recbole/model/general_recommender/sgl.py``)
    https://github.com/HKUDS/RLMRec (``encoder/models/general_cf/sgl.py``: the layer sum, views drawn
    per step from the normalised graph, losses averaged over the batch, the negatives' views
    contrasted too, the regulariser over all parameters)
"""

import torch
import torch.nn.functional as F
from recbole.model.general_recommender.sgl import SGL as RecBoleSGL

from recbole_llm.model.general_recommender.graph_base import drop_edges, squared_norm


def propagate(model, graph, layer_combination):
    r"""SGL's forward: ``model``'s ego embeddings through ``n_layers`` products with ``graph`` (one
    sparse graph, or one per layer), the layers' ``mean`` or ``sum``; returns (users, items)."""
    all_embeddings = model.get_ego_embeddings()
    embeddings_list = [all_embeddings]
    for layer_graph in graph if isinstance(graph, list) else [graph] * model.n_layers:
        all_embeddings = torch.sparse.mm(layer_graph, all_embeddings)
        embeddings_list.append(all_embeddings)
    layers = torch.stack(embeddings_list, dim=1)
    final = layers.sum(dim=1) if layer_combination == "sum" else layers.mean(dim=1)
    return torch.split(final, [model.n_users, model.n_items])


class SGL(RecBoleSGL):
    r"""RecBole's SGL, with RLMRec's training choices as keys (RecBole's by default).

    - ``layer_combination``: ``mean`` (RecBole's) or ``sum`` (RLMRec's) of the ``n_layers + 1``
      layer embeddings, as in the plugin's LightGCN.
    - ``view_sampling``: ``epoch`` (RecBole's) draws the two augmented graphs once per epoch from the
      training interactions and normalises each; ``step`` (RLMRec's, edge dropout ``type: ED`` only)
      draws them at every training step by dropping ``drop_ratio`` of the normalised training graph's
      non-zeros, kept values not rescaled.
    - ``loss_reduction``: ``sum`` (RecBole's) adds the BPR and SSL terms over the batch's rows,
      ``mean`` (RLMRec's) averages them, so ``ssl_weight`` and an alignment's ``align_weight`` keep
      RLMRec's values.
    - ``ssl_neg_items``: RLMRec's SSL term also contrasts the two views of the batch's negative items
      (RecBole's: users and positive items only).
    - ``reg_scope``: ``batch`` (RecBole's) or ``all`` (RLMRec's ``reg_params``), as in the plugin's
      LightGCN.
    """

    def __init__(self, config, dataset):
        self.view_sampling = config["view_sampling"]
        if self.view_sampling == "step" and config["type"] != "ED":
            raise ValueError(
                f"view_sampling=step draws edge-dropout views (RLMRec's SGL); type={config['type']!r} needs "
                "view_sampling: epoch, or set type: ED"
            )
        super().__init__(config, dataset)
        self.layer_combination = config["layer_combination"]
        self.loss_reduction = config["loss_reduction"]
        self.ssl_neg_items = config["ssl_neg_items"]
        self.reg_scope = config["reg_scope"]

    def train(self, mode=True):
        if self.view_sampling == "step":  # no per-epoch views to draw (RecBole's SGL.train draws them)
            return super(RecBoleSGL, self).train(mode)
        return super().train(mode)

    def get_ego_embeddings(self):
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight])

    def forward(self, graph):
        return propagate(self, graph, self.layer_combination)

    def views(self):
        r"""The two augmented graphs of this training step."""
        if self.view_sampling == "step":
            return drop_edges(self.train_graph, self.drop_ratio), drop_edges(self.train_graph, self.drop_ratio)
        return self.sub_graph1, self.sub_graph2

    def calculate_loss(self, interaction):
        self.restore_user_e, self.restore_item_e = None, None
        user, pos_item, neg_item = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        user_all, item_all = self.forward(self.train_graph)  # first: the main view, which the alignment reads
        graph1, graph2 = self.views()
        # Each view normalised once: the InfoNCE terms index rows of these.
        user_sub1, item_sub1 = (F.normalize(e, dim=1) for e in self.forward(graph1))
        user_sub2, item_sub2 = (F.normalize(e, dim=1) for e in self.forward(graph2))
        items = (pos_item, neg_item) if self.ssl_neg_items else (pos_item,)
        ssl = self.info_nce(user_sub1, user_sub2, user) + sum(self.info_nce(item_sub1, item_sub2, i) for i in items)
        user_e = user_all[user]
        bpr = -F.logsigmoid((user_e * item_all[pos_item]).sum(dim=1) - (user_e * item_all[neg_item]).sum(dim=1)).sum()
        if self.loss_reduction == "mean":
            bpr, ssl = bpr / len(user), ssl / len(user)
        return bpr + self.reg_weight * self.regulariser(user, pos_item, neg_item) + self.ssl_weight * ssl

    def info_nce(self, view1, view2, rows):
        r"""SGL's InfoNCE, summed over ``rows``: each row's two views against all rows of view 2
        (``view1``, ``view2``: row-normalised)."""
        anchor = view1[rows]
        positive = torch.exp((anchor * view2[rows]).sum(dim=1) / self.ssl_tau)
        total = torch.exp(anchor.matmul(view2.T) / self.ssl_tau).sum(dim=1)
        return -torch.log(positive / total).sum()

    def regulariser(self, user, pos_item, neg_item):
        if self.reg_scope == "all":
            return squared_norm(self)
        return self.reg_loss(self.user_embedding(user), self.item_embedding(pos_item), self.item_embedding(neg_item))
