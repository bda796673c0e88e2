r"""
RLMRec alignment losses
################################################

Reference:
    Xubin Ren et al. "Representation Learning with Large Language Models for Recommendation." in WWW 2024.

Reference code:
    https://github.com/HKUDS/RLMRec

Both losses pull collaborative (CF) embeddings towards semantic profile vectors with an InfoNCE over
cosine similarities. They are written once here and used by every ``<Base>_RLM`` model.
"""

import torch
import torch.nn as nn

from recbole_llm.model.loss import info_nce

DEFAULT_WEIGHT = {"con": 0.01, "gen": 0.1}
DEFAULT_TEMPERATURE = {"con": 0.2, "gen": 0.5}


def weight_and_temperature(config):
    r"""``align_weight`` and ``align_temperature`` of ``config``; ``~`` means RLMRec's for its ``align``."""
    align = config["align"]
    weight = config["align_weight"] if config["align_weight"] is not None else DEFAULT_WEIGHT[align]
    temperature = config["align_temperature"] if config["align_temperature"] is not None else DEFAULT_TEMPERATURE[align]
    return weight, temperature
# Con's in-batch InfoNCEs over at most this many rows are computed on the rows as they are, in one
# batched product; over more, on the distinct ids weighted by their counts. Both give the same
# value; on the CPU the first is ~0.4 ms faster at 64-128 rows (fewer operations), the second
# faster from ~256 rows on (fewer logits when a large batch repeats ids).
STACKED_MAX_ROWS = 128


def _in_batch_info_nce(anchor, target, counts, temperature):
    r"""Summed in-batch InfoNCE over DISTINCT ids weighted by their batch counts.

    A repeated id gives identical rows and identical candidates, so this equals the InfoNCE over the
    full batch (each row's candidates = all the batch's targets) at (distinct ids)^2 cost instead of B^2.
    """
    counts = counts.to(anchor.dtype)
    return (info_nce(anchor, target, temperature, candidate_log_weight=counts.log()) * counts).sum()


def _mlp(in_dim, out_dim, bias_init="zeros"):
    r"""``Linear -> LeakyReLU -> Linear`` with Xavier weights; biases zero, or (``"pytorch"``, as
    RLMRec's MLPs) left at PyTorch's ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    hidden = (in_dim + out_dim) // 2
    mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, out_dim))
    for layer in (mlp[0], mlp[2]):
        nn.init.xavier_uniform_(layer.weight)
        if bias_init == "zeros":
            nn.init.zeros_(layer.bias)
    return mlp


class ContrastiveAlignment(nn.Module):
    r"""RLMRec-Con: profiles projected into the CF space, contrasted with the CF embeddings.

    One MLP ``Linear(d_s, (d_s+d)/2) -> LeakyReLU -> Linear(d)`` projects user and item profiles.
    Each batch user is contrasted with all users' projected profiles (``user_negatives='all'``, as
    RLMRec) or with the batch's users only (``'batch'``: cost independent of the user count); the
    positive and negative items each with the in-batch projected item profiles. The three summed
    losses are divided by the batch size. ``sample_size`` can cap how many of the batch's
    (user, positive, negative) rows the loss uses (a uniform sample; they are also each other's
    negatives), so that its cost stops growing with the batch. With ``'batch'`` users a small
    sample takes a faster, stacked form of the same loss (see ``STACKED_MAX_ROWS``).
    """

    def __init__(self, profile_dim, embedding_dim, temperature, user_negatives="all", sample_size=None, bias_init="zeros"):
        super().__init__()
        self.temperature = temperature
        self.user_negatives = user_negatives
        self.sample_size = sample_size
        self.projector = _mlp(profile_dim, embedding_dim, bias_init)

    def forward(self, user_all, item_all, user, pos_item, neg_item, user_profile, item_profile):
        r"""Args: ``user_all, item_all`` the step's final CF embeddings of all users / items;
        ``user, pos_item, neg_item`` the batch [B]; ``user_profile, item_profile`` all profile
        vectors, row = internal id (row 0 = padding)."""
        t = self.temperature
        if self.sample_size is not None and len(user) > self.sample_size:
            rows = torch.randperm(len(user), device=user.device)[: self.sample_size]
            user, pos_item, neg_item = user[rows], pos_item[rows], neg_item[rows]
        if self.user_negatives == "batch" and len(user) <= STACKED_MAX_ROWS:
            return self._stacked_in_batch_loss(user_all, item_all, user, pos_item, neg_item, user_profile, item_profile)
        pos_ids, pos_counts = torch.unique(pos_item, return_counts=True)
        neg_ids, neg_counts = torch.unique(neg_item, return_counts=True)
        # Each distinct item of the batch is projected once.
        items, inverse = torch.unique(torch.cat([pos_ids, neg_ids]), return_inverse=True)
        pos_p, neg_p = self.projector(item_profile[items])[inverse].split([len(pos_ids), len(neg_ids)])
        loss = _in_batch_info_nce(item_all[pos_ids], pos_p, pos_counts, t)
        loss = loss + _in_batch_info_nce(item_all[neg_ids], neg_p, neg_counts, t)
        user_ids, user_counts = torch.unique(user, return_counts=True)
        if self.user_negatives == "all":
            # Row 0 is RecBole's padding user: it is no candidate.
            candidates = self.projector(user_profile[1:])
            user_loss = info_nce(user_all[user_ids], candidates, t, positive=user_ids - 1)
            loss = loss + (user_loss * user_counts.to(user_loss.dtype)).sum()
        else:
            loss = loss + _in_batch_info_nce(user_all[user_ids], self.projector(user_profile[user_ids]), user_counts, t)
        return loss / len(user)

    def align_sequences(self, sequences, users, user_profile, item_all, item_groups, item_profile, candidates=None, positive=None):
        r"""Con for sequential recommenders: each row's sequence representation with its user's
        profile, the step's items with their item profiles.

        Args: ``sequences`` [R, d] the representations the base scores with, ``users`` [R] their
        users (R may be 0: no user term); ``user_profile`` all user profile vectors (row = internal
        id); ``item_all`` [n_items, d] the item embeddings the base scores with; ``item_groups``
        the step's item ids (e.g. positives, negatives), each group aligned in batch;
        ``item_profile`` all item profile vectors; ``candidates`` the user ids the user InfoNCE's
        denominator runs over for ``user_negatives='all'`` (all users with a usable profile) and
        ``positive`` [R] each row's user among them.

        Each term is a mean over its rows: :meth:`forward`'s sum over the batch divided by the
        batch size where every group has one item per row.
        """
        t = self.temperature
        loss = sequences.new_zeros(())
        for items in item_groups:
            items = self._sample(items)
            ids, counts = torch.unique(items, return_counts=True)
            loss = loss + _in_batch_info_nce(item_all[ids], self.projector(item_profile[ids]), counts, t) / len(items)
        if not len(users):
            return loss
        rows = self._sample(torch.arange(len(users), device=users.device))
        sequences, users = sequences[rows], users[rows]
        if self.user_negatives == "all":
            user_loss = info_nce(sequences, self.projector(user_profile[candidates]), t, positive=positive[rows])
        else:
            # The batch's distinct users, each weighted by its count: the value of the in-batch
            # InfoNCE over the rows as they are (a user's rows share one candidate profile).
            ids, inverse, counts = torch.unique(users, return_inverse=True, return_counts=True)
            user_loss = info_nce(sequences, self.projector(user_profile[ids]), t, positive=inverse, candidate_log_weight=counts.log())
        return loss + user_loss.mean()

    def _sample(self, rows):
        if self.sample_size is None or len(rows) <= self.sample_size:
            return rows
        return rows[torch.randperm(len(rows), device=rows.device)[: self.sample_size]]

    def _stacked_in_batch_loss(self, user_all, item_all, user, pos_item, neg_item, user_profile, item_profile):
        r"""The three in-batch InfoNCEs (positive items, negative items, users) over the rows as
        they are: one gather per table, one projection and one batched [3, B, B] product."""
        items = torch.cat([pos_item, neg_item])
        collaborative = torch.cat([item_all[items], user_all[user]]).view(3, len(user), -1)
        semantic = self.projector(torch.cat([item_profile[items], user_profile[user]])).view(3, len(user), -1)
        return info_nce(collaborative, semantic, self.temperature).sum() / len(user)


class GenerativeAlignment(nn.Module):
    r"""RLMRec-Gen: masked nodes' propagated embeddings reconstruct their own profiles.

    Before propagation a random ``mask_ratio`` share of the user+item nodes (padding rows excluded)
    have their ego embedding replaced by a learnable mask token (:meth:`mask`). After propagation the
    masked nodes' final embeddings go through ``Linear(d, (d+d_s)/2) -> LeakyReLU -> Linear(d_s)``
    and an in-batch InfoNCE over the masked nodes pulls each towards its own profile (:meth:`forward`).
    That InfoNCE grows with the square of the masked count, so ``sample_size`` can cap how many of
    the masked nodes it uses (a uniform sample; they are also each other's negatives).
    """

    def __init__(self, embedding_dim, profile_dim, temperature, mask_ratio, ego_dim=None, sample_size=None, bias_init="zeros"):
        r"""``embedding_dim``: width of the final embeddings the decoder reads; ``ego_dim``: width of
        the ego embeddings the mask token replaces (default ``embedding_dim``; wider final
        embeddings come from bases that concatenate layers, e.g. NGCF); ``sample_size``: most masked
        nodes reconstructed per step (``None``: all, as RLMRec); ``bias_init``: the decoder's biases
        (:func:`_mlp`)."""
        super().__init__()
        self.temperature = temperature
        self.mask_ratio = mask_ratio
        self.sample_size = sample_size
        self.mask_token = nn.Parameter(torch.zeros(1, ego_dim or embedding_dim))
        self.decoder = _mlp(embedding_dim, profile_dim, bias_init)

    def draw(self, candidates):
        r"""A random ``mask_ratio`` share (at least one) of ``candidates`` (node ids), in random order."""
        n_masked = max(int(len(candidates) * self.mask_ratio), 1)
        return candidates[torch.randperm(len(candidates), device=candidates.device)[:n_masked]]

    def mask(self, ego_embeddings, candidates):
        r"""Replace the nodes of :meth:`draw` by the mask token.

        Returns:
            tuple: the masked ego embeddings [N, d] and the masked node ids, in random order.
        """
        seeds = self.draw(candidates)
        return self.replace(ego_embeddings, seeds), seeds

    def replace(self, ego_embeddings, seeds):
        r"""``ego_embeddings`` with the rows ``seeds`` replaced by the mask token."""
        # One copy and a scatter of the masked rows (not a blend of the whole table with a 0/1
        # column): ~2.5x less time for masking ml-100k's 2,627 nodes, forward and backward.
        return ego_embeddings.index_put((seeds,), self.mask_token.expand(len(seeds), -1))

    def forward(self, node_embeddings, node_profile, seeds):
        r"""Args: ``node_embeddings`` [N, d] propagated; ``node_profile`` [N, d_s] in the same node order;
        ``seeds`` the masked node ids from :meth:`mask`."""
        # mask() returns the masked nodes in random order: the first sample_size are a uniform sample.
        seeds = seeds[: self.sample_size]
        return self.reconstruction_loss(node_embeddings[seeds], node_profile[seeds])

    def reconstruction_loss(self, embeddings, profiles, positive=None):
        r"""The decoded ``embeddings`` [M, d] against the candidate ``profiles`` [C, d_s]; row m's
        own profile is ``profiles[positive[m]]`` (default: ``profiles[m]``)."""
        return info_nce(self.decoder(embeddings), profiles, self.temperature, positive=positive).mean()


def alignment_from_config(config, profile_dim, embedding_dim, ego_dim=None):
    r"""The ``align`` of ``config`` (``con`` or ``gen``) as a module, with every alignment key of the
    config read here, and its weight: ``(align_weight, module)``. ``ego_dim``: see
    :class:`GenerativeAlignment`."""
    weight, temperature = weight_and_temperature(config)
    if config["align"] == "con":
        return weight, ContrastiveAlignment(
            profile_dim, embedding_dim, temperature, config["align_user_negatives"], config["align_sample_size"],
            config["align_bias_init"],
        )
    return weight, GenerativeAlignment(
        embedding_dim, profile_dim, temperature, config["mask_ratio"], ego_dim, config["mask_sample_size"],
        config["align_bias_init"],
    )
