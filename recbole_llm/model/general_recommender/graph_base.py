r"""
Shared pieces of the plugin's graph recommenders
################################################

Not a model: what SimGCL, GCCF, DCCF and AutoCF share (and LightGCN's and SGL's edge dropout and regulariser).

- :func:`normalized_adjacency` / :func:`symmetric_normalize`: the user-item graph
  ``D^{-1/2} A D^{-1/2}`` (optionally with self-loops, ``A + I``) as a torch sparse tensor, nodes
  ordered users then items as in RecBole's LightGCN; :func:`drop_edges`: RLMRec's edge dropout;
  :func:`squared_norm`: RLMRec's regulariser over all parameters.
- :class:`GraphRecommender`: a RecBole ``GeneralRecommender`` with user/item embedding tables,
  the training graph, ``get_ego_embeddings()``, the BPR + L2 loss of the main view
  (:meth:`~GraphRecommender.bpr_loss`), and LightGCN's ``predict`` / ``full_sort_predict``. A model
  adds its ``forward()`` (returning the final user and item embeddings first) and its own loss terms.
"""

import torch
import torch.nn as nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_uniform_initialization
from recbole.model.loss import BPRLoss, EmbLoss
from recbole.utils import InputType


def symmetric_normalize(rows, cols, n_nodes, values=None):
    r"""``D^{-1/2} A D^{-1/2}`` of the graph with edges ``rows -> cols`` (``values`` default 1).

    Degrees are the row sums; a node without edges keeps an empty row.

    Returns:
        torch.Tensor: coalesced sparse COO tensor [n_nodes, n_nodes].
    """
    if values is None:
        values = torch.ones(len(rows), device=rows.device)
    degree = torch.zeros(n_nodes, device=rows.device).index_add_(0, rows, values)
    inv_sqrt = degree.pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    indices = torch.stack([rows, cols])
    return torch.sparse_coo_tensor(indices, inv_sqrt[rows] * values * inv_sqrt[cols], (n_nodes, n_nodes)).coalesce()


def drop_edges(adjacency, ratio):
    r"""``adjacency`` (sparse COO) without a random ``ratio`` share of its non-zeros, each dropped
    independently; the kept values are not rescaled (RLMRec's ``SpAdjEdgeDrop``)."""
    keep = torch.rand(adjacency._nnz(), device=adjacency.device) >= ratio
    indices, values = adjacency._indices()[:, keep], adjacency._values()[keep]
    return torch.sparse_coo_tensor(indices, values, adjacency.shape, check_invariants=False)


def squared_norm(module):
    r"""The sum of the squared L2 norms of all of ``module``'s parameters (RLMRec's ``reg_params``;
    the plugin's ``reg_scope: all``)."""
    return sum(parameter.square().sum() for parameter in module.parameters())


def bipartite_edges(n_users, n_items, users, items, self_loop=False):
    r"""Both directions of each (user, item) pair as node ids (items shifted by ``n_users``),
    plus one self-loop per node if ``self_loop``.

    Returns:
        tuple: (rows, cols) LongTensors.
    """
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    if self_loop:
        loop = torch.arange(n_users + n_items, device=users.device)
        rows, cols = torch.cat([rows, loop]), torch.cat([cols, loop])
    return rows, cols


def normalized_adjacency(n_users, n_items, users, items, self_loop=False):
    r"""The normalised user-item graph ``D^{-1/2} (A [+ I]) D^{-1/2}``, users then items.

    Args:
        users, items (torch.LongTensor): [E] the training pairs, each pair once.
        self_loop (bool): add ``I`` before normalising (GCCF, AutoCF).
    """
    rows, cols = bipartite_edges(n_users, n_items, users, items, self_loop)
    return symmetric_normalize(rows, cols, n_users + n_items)


class GraphRecommender(GeneralRecommender):
    r"""Base of the plugin's graph models (see the module docstring); not a model by itself.

    Config keys read here: ``embedding_size``, ``n_layers``, ``reg_weight``, ``require_pow``.
    Subclasses set ``self_loop = True`` to propagate over ``A + I``.
    """

    input_type = InputType.PAIRWISE
    self_loop = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        self.require_pow = config["require_pow"]

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.mf_loss = BPRLoss()
        self.reg_loss = EmbLoss()

        # Training pairs, each once (the CSR form sums repeated interactions).
        interactions = dataset.inter_matrix(form="csr").tocoo()
        self.edge_users = torch.from_numpy(interactions.row).long().to(self.device)
        self.edge_items = torch.from_numpy(interactions.col).long().to(self.device)
        self.norm_adj_matrix = normalized_adjacency(
            self.n_users, self.n_items, self.edge_users, self.edge_items, self.self_loop
        ).to(self.device)

        # storage variables for full sort evaluation acceleration
        self.restore_user_e = None
        self.restore_item_e = None
        self.other_parameter_name = ["restore_user_e", "restore_item_e"]

        self.apply(xavier_uniform_initialization)

    def get_ego_embeddings(self):
        r"""Layer-0 embeddings of all users then all items, [n_users + n_items, embedding_size]."""
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)

    def split(self, node_embeddings):
        r"""Node embeddings [n_users + n_items, d] -> (users [n_users, d], items [n_items, d])."""
        return torch.split(node_embeddings, [self.n_users, self.n_items])

    def bpr_loss(self, user_all, item_all, interaction, *extra_reg):
        r"""BPR on the final embeddings plus ``reg_weight`` times L2 of the batch's ego embeddings
        (and of ``extra_reg`` tensors), as RecBole's LightGCN."""
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        u_embeddings = user_all[user]
        pos_scores = torch.mul(u_embeddings, item_all[pos_item]).sum(dim=1)
        neg_scores = torch.mul(u_embeddings, item_all[neg_item]).sum(dim=1)
        reg_loss = self.reg_loss(
            *extra_reg,
            self.user_embedding(user),
            self.item_embedding(pos_item),
            self.item_embedding(neg_item),
            require_pow=self.require_pow,
        )
        return self.mf_loss(pos_scores, neg_scores) + self.reg_weight * reg_loss

    def clear_restored(self):
        # Training changes the embeddings: drop the evaluation cache.
        self.restore_user_e, self.restore_item_e = None, None

    def predict(self, interaction):
        user_all, item_all = self.forward()[:2]
        return torch.mul(user_all[interaction[self.USER_ID]], item_all[interaction[self.ITEM_ID]]).sum(dim=1)

    def full_sort_predict(self, interaction):
        if self.restore_user_e is None or self.restore_item_e is None:
            self.restore_user_e, self.restore_item_e = self.forward()[:2]
        u_embeddings = self.restore_user_e[interaction[self.USER_ID]]
        return torch.matmul(u_embeddings, self.restore_item_e.transpose(0, 1)).view(-1)
