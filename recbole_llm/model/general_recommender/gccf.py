r"""
GCCF
################################################

Reference:
    Lei Chen et al. "Revisiting Graph based Collaborative Filtering: A Linear Residual Graph
    Convolutional Network Approach." in AAAI 2020 (LR-GCCF).

Reference code:
    https://github.com/newlei/LR-GCCF
"""

import torch
import torch.nn as nn

from recbole_llm.model.general_recommender.graph_base import GraphRecommender


class GCCF(GraphRecommender):
    r"""LR-GCCF: linear graph convolutions over the self-looped graph, residual by concatenation.

    ``E^{k+1} = S E^k [W^k]`` with ``S = (D+I)^{-1/2} (A+I) (D+I)^{-1/2}`` and no non-linearity; a
    user-item score is the dot product of the concatenations ``[E^0, ..., E^K]``, so the final
    embeddings are ``(n_layers + 1) * embedding_size`` wide. ``layer_weights: False`` drops the
    ``W^k`` (as RLMRec's GCCF, which performs better without them).
    """

    self_loop = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.layer_weights = config["layer_weights"]
        self.final_embedding_size = self.embedding_size * (self.n_layers + 1)
        self.transforms = nn.ModuleList(
            nn.Linear(self.embedding_size, self.embedding_size, bias=False) for _ in range(self.n_layers if self.layer_weights else 0)
        )
        for transform in self.transforms:
            nn.init.xavier_uniform_(transform.weight)

    def forward(self):
        all_embeddings = self.get_ego_embeddings()
        embeddings_list = [all_embeddings]
        for layer_idx in range(self.n_layers):
            all_embeddings = torch.sparse.mm(self.norm_adj_matrix, all_embeddings)
            if self.layer_weights:
                all_embeddings = self.transforms[layer_idx](all_embeddings)
            embeddings_list.append(all_embeddings)
        return self.split(torch.cat(embeddings_list, dim=1))

    def calculate_loss(self, interaction):
        self.clear_restored()
        user_all, item_all = self.forward()
        return self.bpr_loss(user_all, item_all, interaction)
