r"""
Cold-start scoring: embeddings for users and items that have a profile but no training interaction
###################################################################################################

A node (user or item) without a training interaction has no collaborative signal: its ID embedding
is whatever initialisation left. Its profile vector is all a model has; the ``cold_start`` config key
chooses how to turn it into an embedding in the model's final embedding space:

- ``none`` (default): the base model's own scores, unchanged.
- ``knn``: the similarity-weighted mean of the final embeddings of the ``cold_start_k`` warm nodes
  of the same kind (users for a user, items for an item) whose profiles are the most cosine-similar;
  weights are the cosines clipped at 0 and normalised (a uniform mean if all are <= 0). Works for
  any model, aligned or not (the profile vectors alone pick the neighbours).
- ``projector``: a learned map from profile to embedding. With ``align: con`` it is Con's trained
  projector (trained to point a node's projected profile at its final embedding under a cosine
  InfoNCE, which leaves the length free: use it with ``cold_start_norm: warm_mean``). Otherwise (``gen``, ``none``) a ridge regression
  from profile to final embedding (with intercept) fitted on the warm nodes of each kind, penalty
  ``cold_start_ridge`` times the mean eigenvalue of the profiles' covariance. It is refitted at every
  evaluation pass on the embeddings being evaluated (a closed form: the profile side is solved once
  at model build, each pass only multiplies it with the current warm embeddings), so there is no
  extra training and nothing to save.

``cold_start_norm``: ``none`` (default) keeps the cold embeddings as computed; ``warm_mean`` rescales
each to the mean length of the warm final embeddings of its kind. Under dot-product scoring the
length decides how a cold item competes with warm ones: a mean of neighbours, or a regression's
prediction, is shorter than a typical warm embedding, so cold items rank low; ``warm_mean`` lifts
them (at some cost to warm items: ``results/ml-100k-cold.md``).

Warm nodes keep their own embeddings. Cold nodes are those with no training interaction and a
non-zero profile vector (``profile_missing: zero`` leaves a node without text as it is). The
cold nodes, neighbours, weights and the ridge map are computed from the training split and the
profile store at model build, like the profile buffer, so a checkpoint reload (which reads the same
store) scores exactly as before.

Scores are dot products of final embeddings (all supported bases score so), computed once per
evaluation pass: the final embeddings come from the base's adapter
(:meth:`~recbole_llm.model.adapters.EmbeddingAdapter.eval_embeddings`), cold rows are replaced,
and the result is kept until the model trains again (``train()``) or loads a state dict.
"""

import torch
import torch.nn.functional as F
from recbole.utils import ModelType

CHUNK = 4096


class ColdStartRecommender:
    r"""Mixin of ``<Base>_RLM`` (see :func:`recbole_llm.rlm`): ``predict`` and ``full_sort_predict``
    with cold-start embeddings when ``cold_start`` is not ``none``, the base's own otherwise."""

    cold_start = "none"
    _cold_cache = None

    def init_cold_start(self, config, dataset, node_profile):
        r"""Set up the ``cold_start`` scoring (called by ``__init__`` once the profiles are read)."""
        self.cold_start = config["cold_start"]
        self.cold_start_norm = config["cold_start_norm"]
        self._cold_cache = None
        if self.cold_start == "none":
            return
        if type(self).type != ModelType.GENERAL:  # the class attribute: SGL keeps its augmentation in self.type
            raise ValueError(
                f"cold_start={self.cold_start}: {type(self).__name__} is not a general recommender; cold-start scoring "
                "replaces rows of user and item embeddings scored by dot product. Set cold_start: none."
            )
        interactions = dataset.inter_matrix(form="csr")
        n_users = self.n_users
        degrees = torch.cat([torch.from_numpy(interactions.getnnz(axis=1)), torch.from_numpy(interactions.getnnz(axis=0))])
        padding = torch.zeros_like(degrees, dtype=torch.bool)
        padding[[0, n_users]] = True
        has_text = node_profile.abs().sum(dim=1) > 0
        warm = (degrees > 0) & ~padding
        cold = (degrees == 0) & ~padding & has_text
        kinds = torch.zeros_like(degrees, dtype=torch.bool)
        kinds[n_users:] = True  # False: user node, True: item node
        con = getattr(self, "alignment", None) is not None and self.align == "con"
        self.cold_projector = con and self.cold_start == "projector"
        groups = []
        for is_item in (False, True):
            cold_ids = torch.nonzero(cold & (kinds == is_item)).view(-1)
            warm_ids = torch.nonzero(warm & (kinds == is_item)).view(-1)
            if len(cold_ids) == 0:
                continue
            if len(warm_ids) == 0:
                raise ValueError(f"cold_start={self.cold_start}: no {'item' if is_item else 'user'} has a training interaction")
            groups.append((cold_ids, warm_ids))
        self.cold_groups = []
        for index, (cold_ids, warm_ids) in enumerate(groups):
            self.register_buffer(f"cold_nodes_{index}", cold_ids.to(self.device), persistent=False)
            self.register_buffer(f"warm_nodes_{index}", warm_ids.to(self.device), persistent=False)
            if self.cold_start == "knn":
                neighbours, weights = nearest_warm(node_profile, cold_ids, warm_ids, config["cold_start_k"])
                self.register_buffer(f"cold_neighbours_{index}", neighbours.to(self.device), persistent=False)
                self.register_buffer(f"cold_weights_{index}", weights.to(self.device), persistent=False)
            elif not self.cold_projector:
                centred_cold, solve = ridge_map(node_profile[cold_ids], node_profile[warm_ids], config["cold_start_ridge"])
                self.register_buffer(f"cold_profile_{index}", centred_cold.to(self.device), persistent=False)
                self.register_buffer(f"ridge_solve_{index}", solve.to(self.device), persistent=False)
            self.cold_groups.append(index)

    def cold_start_embeddings(self):
        r"""(users [n_users, d], items [n_items, d]): the final embeddings with cold rows replaced."""
        if self._cold_cache is None:
            user_all, item_all = self.rlm_adapter.eval_embeddings(self)
            nodes = torch.cat([user_all, item_all])
            for index in self.cold_groups:
                cold_ids, warm_ids = getattr(self, f"cold_nodes_{index}"), getattr(self, f"warm_nodes_{index}")
                rows = self._cold_rows(index, nodes, cold_ids, warm_ids)
                if self.cold_start_norm == "warm_mean":
                    rows = F.normalize(rows, dim=1) * nodes[warm_ids].norm(dim=1).mean()
                nodes = nodes.index_copy(0, cold_ids, rows)
            self._cold_cache = torch.split(nodes, [self.n_users, self.n_items])
        return self._cold_cache

    def _cold_rows(self, index, nodes, cold_ids, warm_ids):
        if self.cold_start == "knn":
            neighbours, weights = getattr(self, f"cold_neighbours_{index}"), getattr(self, f"cold_weights_{index}")
            return (nodes[neighbours] * weights.unsqueeze(-1)).sum(dim=1)
        if self.cold_projector:
            return self.alignment.projector(self.node_profile[cold_ids])
        warm = nodes[warm_ids]
        mean = warm.mean(dim=0, keepdim=True)
        weights = getattr(self, f"ridge_solve_{index}") @ (warm - mean)  # [d_s, d]: this pass's fit
        return getattr(self, f"cold_profile_{index}") @ weights + mean

    def predict(self, interaction):
        if self.cold_start == "none":
            return super().predict(interaction)
        user_all, item_all = self.cold_start_embeddings()
        return (user_all[interaction[self.USER_ID]] * item_all[interaction[self.ITEM_ID]]).sum(dim=-1)

    def full_sort_predict(self, interaction):
        if self.cold_start == "none":
            return super().full_sort_predict(interaction)
        user_all, item_all = self.cold_start_embeddings()
        return (user_all[interaction[self.USER_ID]] @ item_all.T).view(-1)

    def train(self, mode=True):
        self._cold_cache = None  # the embeddings change once the model trains (or is put back in eval)
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._cold_cache = None
        return super().load_state_dict(*args, **kwargs)


def nearest_warm(node_profile, cold_ids, warm_ids, k):
    r"""The ``k`` warm nodes (ids) whose profiles are the most cosine-similar to each cold node's,
    and their weights (cosines clipped at 0, normalised; uniform where all are <= 0)."""
    k = min(k, len(warm_ids))
    warm = F.normalize(node_profile[warm_ids], dim=1)
    neighbours, weights = [], []
    for chunk in cold_ids.split(CHUNK):
        similarity = F.normalize(node_profile[chunk], dim=1) @ warm.T
        top, position = similarity.topk(k, dim=1)
        top = top.clamp(min=0)
        total = top.sum(dim=1, keepdim=True)
        weights.append(torch.where(total > 0, top / total.clamp(min=1e-12), torch.full_like(top, 1.0 / k)))
        neighbours.append(warm_ids[position])
    return torch.cat(neighbours), torch.cat(weights)


def ridge_map(cold_profile, warm_profile, penalty):
    r"""The profile side of a ridge regression (with intercept) of warm embeddings Y on warm
    profiles X: (cold profiles - mean(X) [n_cold, d_s], S [d_s, n_warm]) such that the fitted map
    applied to the cold profiles is ``(cold - mean(X)) @ S @ (Y - mean(Y)) + mean(Y)``; stored
    this way its size grows with the node counts, not their product. The penalty is ``penalty``
    times the mean eigenvalue of the warm profiles' covariance."""
    x = warm_profile.double()
    mean = x.mean(dim=0, keepdim=True)
    centred = x - mean
    covariance = centred.T @ centred / len(x)
    regulariser = penalty * covariance.diagonal().mean() * torch.eye(x.shape[1], dtype=x.dtype)
    solve = torch.linalg.solve(covariance + regulariser, centred.T / len(x))  # [d_s, n_warm]
    return (cold_profile.double() - mean).float(), solve.float()
