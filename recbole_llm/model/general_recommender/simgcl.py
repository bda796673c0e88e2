r"""
SimGCL
################################################

Reference:
    Junliang Yu et al. "Are Graph Augmentations Necessary? Simple Graph Contrastive Learning for
    Recommendation." in SIGIR 2022.

Reference code:
    https://github.com/Coder-Yu/SELFRec
"""

import torch
import torch.nn.functional as F

from recbole_llm.model.loss import info_nce
from recbole_llm.model.general_recommender.graph_base import GraphRecommender


class SimGCL(GraphRecommender):
    r"""SimGCL replaces SGL's graph augmentations by random uniform noise added to the embeddings.

    Each layer of a LightGCN propagation gets ``sign(e) * normalize(U(0, 1)) * eps`` added in the two
    contrastive views; the main (unperturbed) view gives the BPR loss and the predictions. As in the
    paper, the final embedding is the mean of layers 1..L (the ego layer 0 is left out). The
    contrastive loss is an InfoNCE between the two views over the batch's distinct users and the
    batch's distinct positive items.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.eps = config["eps"]
        self.cl_weight = config["cl_weight"]
        self.cl_temperature = config["cl_temperature"]

    def perturb(self, embeddings):
        r"""``e + sign(e) * eps * u / ||u||`` with ``u ~ U(0, 1)`` per row (SimGCL eq. 7)."""
        noise = F.normalize(torch.rand_like(embeddings), dim=-1)
        return embeddings + torch.sign(embeddings) * noise * self.eps

    def forward(self, perturbed=False):
        all_embeddings = self.get_ego_embeddings()
        embeddings_list = []
        for _ in range(self.n_layers):
            all_embeddings = torch.sparse.mm(self.norm_adj_matrix, all_embeddings)
            if perturbed:
                all_embeddings = self.perturb(all_embeddings)
            embeddings_list.append(all_embeddings)
        return self.split(torch.stack(embeddings_list, dim=1).mean(dim=1))

    def cl_loss(self, view1, view2, ids):
        r"""Mean InfoNCE between two views of the distinct ``ids`` (in-batch negatives)."""
        ids = torch.unique(ids)
        return info_nce(view1[ids], view2[ids], self.cl_temperature).mean()

    def calculate_loss(self, interaction):
        self.clear_restored()
        # The main view first: it is the view RLM alignment reuses (and Gen masks).
        user_all, item_all = self.forward()
        bpr_loss = self.bpr_loss(user_all, item_all, interaction)

        user_view1, item_view1 = self.forward(perturbed=True)
        user_view2, item_view2 = self.forward(perturbed=True)
        cl_loss = self.cl_loss(user_view1, user_view2, interaction[self.USER_ID]) + self.cl_loss(
            item_view1, item_view2, interaction[self.ITEM_ID]
        )
        return bpr_loss, self.cl_weight * cl_loss
