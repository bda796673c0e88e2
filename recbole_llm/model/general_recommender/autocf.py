r"""
AutoCF
################################################

Reference:
    Lianghao Xia et al. "Automated Self-Supervised Learning for Recommendation." in WWW 2023.

Reference code:
    https://github.com/HKUDS/AutoCF
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_llm.model.general_recommender.graph_base import GraphRecommender, symmetric_normalize


class GraphTransformerLayer(nn.Module):
    r"""Multi-head attention restricted to the edges ``rows -> cols`` (AutoCF's decoder layer)."""

    def __init__(self, embedding_size, head_num):
        super().__init__()
        if embedding_size % head_num:
            raise ValueError(f"embedding_size ({embedding_size}) must be a multiple of head_num ({head_num})")
        self.head_num = head_num
        self.q_transform = nn.Parameter(nn.init.xavier_uniform_(torch.empty(embedding_size, embedding_size)))
        self.k_transform = nn.Parameter(nn.init.xavier_uniform_(torch.empty(embedding_size, embedding_size)))
        self.v_transform = nn.Parameter(nn.init.xavier_uniform_(torch.empty(embedding_size, embedding_size)))

    def forward(self, rows, cols, embeddings):
        n_nodes, dim = embeddings.shape
        heads = lambda x: x.view(-1, self.head_num, dim // self.head_num)  # noqa: E731
        q = heads(embeddings[rows] @ self.q_transform)
        k = heads(embeddings[cols] @ self.k_transform)
        v = heads(embeddings[cols] @ self.v_transform)
        attention = torch.exp(torch.clamp((q * k).sum(dim=-1), -10.0, 10.0))  # [E, heads]
        norm = torch.zeros(n_nodes, self.head_num, device=embeddings.device, dtype=embeddings.dtype)
        attention = attention / (norm.index_add_(0, rows, attention)[rows] + 1e-8)
        messages = (attention.unsqueeze(-1) * v).view(-1, dim)
        return torch.zeros_like(embeddings).index_add_(0, rows, messages)


class AutoCF(GraphRecommender):
    r"""AutoCF: a masked graph autoencoder whose masked sub-graphs are chosen by learned infomax scores.

    Every ``fix_steps`` training steps:

    1. **Seeds.** Each node's local-global consistency ``s_v = sigmoid(cos(mean of its 1- and 2-hop
       neighbours' ego embeddings, e_v))`` is scored; ``seed_num`` seeds are drawn by Gumbel top-k on
       ``log s_v``; ``-mean(log s + noise)`` is the infomax loss (its gradient is that of ``log s``).
    2. **Masking.** The edges within ``mask_depth`` hops of the seeds are removed; the rest,
       re-normalised, is the encoder graph. The decoder graph is the remaining edges, self-loops, and
       as many random edges among the masked nodes (plus a ``keep_rate`` share of random nodes) as
       the graph has edges.

    Each step, ``n_layers`` LightGCN layers over the encoder graph then ``gt_layers`` graph-transformer
    layers over the decoder graph give the embeddings (the sum of all layers). The loss is AutoCF's:
    the mean negative inner product of the batch's (user, positive item) pairs, plus the
    log-sum-exp uniformity terms ``ssl_reg * (users-users + items-items) + users-items``, plus L2 of
    the batch's ego embeddings. Evaluation runs both stages on the full self-looped graph.
    """

    self_loop = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.gt_layers = config["gt_layers"]
        self.seed_num = config["seed_num"]
        self.mask_depth = config["mask_depth"]
        self.keep_rate = config["keep_rate"]
        self.fix_steps = config["fix_steps"]
        self.ssl_reg = config["ssl_reg"]
        self.transformers = nn.ModuleList(
            GraphTransformerLayer(self.embedding_size, config["head_num"]) for _ in range(self.gt_layers)
        )
        self.n_nodes = self.n_users + self.n_items
        # The self-looped graph's edges (AutoCF's adjacency includes I) and its unweighted form.
        self.adj_rows, self.adj_cols = self.norm_adj_matrix.indices()
        self.all_one_adj = torch.sparse_coo_tensor(
            self.norm_adj_matrix.indices(), torch.ones_like(self.norm_adj_matrix.values()), (self.n_nodes, self.n_nodes)
        ).coalesce()
        self.encoder_adj, self.decoder_edges = None, None
        self.sample_step = 0

    def train(self, mode=True):
        if mode:
            self.sample_step = 0  # each epoch starts with a fresh masked graph, as AutoCF's trainer
        return super().train(mode)

    def local_global_scores(self, embeddings):
        r"""``log s_v`` plus Gumbel noise for every node, and the ``seed_num`` top nodes."""
        order = torch.sparse.sum(self.all_one_adj, dim=-1).to_dense().view(-1, 1)
        first = torch.sparse.mm(self.all_one_adj, embeddings) - embeddings
        second = torch.sparse.mm(self.all_one_adj, first) - first - order * embeddings
        second_num = torch.sparse.mm(self.all_one_adj, order) - order - order
        subgraph = (first + second) / (order + second_num + 1e-8)
        scores = torch.sigmoid((F.normalize(subgraph, dim=-1) * F.normalize(embeddings, dim=-1)).sum(dim=-1))
        uniform = torch.rand_like(scores).clamp(1e-12, 1 - 1e-7)
        scores = torch.log(scores) - torch.log(-torch.log(uniform))
        _, seeds = torch.topk(scores, min(self.seed_num, len(scores)))
        return scores, seeds

    def mask_subgraphs(self, seeds):
        r"""Encoder graph (sparse, normalised) and decoder edges ``(rows, cols)`` for ``seeds``."""
        rows, cols = self.adj_rows, self.adj_cols
        masked_nodes = [seeds]
        current = seeds
        for depth in range(self.mask_depth):
            hit = torch.isin(rows, current) | torch.isin(cols, current)
            if depth < self.mask_depth - 1:
                current = torch.unique(torch.cat([rows[hit], cols[hit]]))
                masked_nodes.append(current)
            rows, cols = rows[~hit], cols[~hit]
        sampled = torch.randint(self.n_nodes, (int(self.n_nodes * self.keep_rate),), device=rows.device)
        masked_nodes = torch.unique(torch.cat(masked_nodes + [sampled]))
        encoder_adj = symmetric_normalize(rows, cols, self.n_nodes)

        n_edges = len(self.adj_rows)
        random_rows = masked_nodes[torch.randint(len(masked_nodes), (n_edges,), device=rows.device)]
        random_cols = masked_nodes[torch.randint(len(masked_nodes), (n_edges,), device=rows.device)]
        loop = torch.arange(self.n_nodes, device=rows.device)
        keys = torch.unique(
            torch.cat([random_rows, random_cols, loop, rows]) * self.n_nodes + torch.cat([random_cols, random_rows, loop, cols])
        )
        return encoder_adj, (keys // self.n_nodes, keys % self.n_nodes)

    def forward(self, encoder_adj=None, decoder_edges=None):
        if encoder_adj is None:
            encoder_adj, decoder_edges = self.norm_adj_matrix, (self.adj_rows, self.adj_cols)
        embeddings_list = [self.get_ego_embeddings()]
        for _ in range(self.n_layers):
            embeddings_list.append(torch.sparse.mm(encoder_adj, embeddings_list[-1]))
        for transformer in self.transformers:
            embeddings_list.append(transformer(*decoder_edges, embeddings_list[-1]))
        return self.split(torch.stack(embeddings_list, dim=0).sum(dim=0))

    @staticmethod
    def uniformity(anchors, candidates):
        r"""Mean over anchors of ``log sum_c exp(a . c)``."""
        return torch.logsumexp(anchors @ candidates.T, dim=1).mean()

    def calculate_loss(self, interaction):
        self.clear_restored()
        infomax_loss = 0.0
        if self.sample_step % self.fix_steps == 0:
            # Scored on the raw embedding tables (not get_ego_embeddings(), which RLM-Gen masks).
            tables = torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)
            scores, seeds = self.local_global_scores(tables)
            self.encoder_adj, self.decoder_edges = self.mask_subgraphs(seeds)
            infomax_loss = -scores.mean()
        self.sample_step += 1

        user, pos_item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        user_all, item_all = self.forward(self.encoder_adj, self.decoder_edges)
        u_embeddings, pos_embeddings = user_all[user], item_all[pos_item]
        rec_loss = -(u_embeddings * pos_embeddings).sum(dim=-1).mean()
        reg_loss = self.reg_loss(self.user_embedding(user), self.item_embedding(pos_item), require_pow=self.require_pow)
        cl_loss = self.ssl_reg * (
            self.uniformity(user_all[torch.unique(user)], user_all) + self.uniformity(item_all[torch.unique(pos_item)], item_all)
        ) + self.uniformity(u_embeddings, item_all)
        return rec_loss + self.reg_weight * reg_loss, cl_loss + infomax_loss
