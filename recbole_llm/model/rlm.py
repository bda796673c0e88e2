r"""
RLM: RLMRec alignment for any RecBole model
################################################

Reference:
    Xubin Ren et al. "Representation Learning with Large Language Models for Recommendation." in WWW 2024.

``rlm(Base)`` returns ``Base_RLM``: the base model unchanged (``forward``, ``predict``,
``full_sort_predict``, its loss) plus one alignment term, chosen by the ``align`` config key:

- ``con``: :class:`~recbole_llm.model.alignment.ContrastiveAlignment` on the final embeddings;
- ``gen``: :class:`~recbole_llm.model.alignment.GenerativeAlignment`, masking the ego embeddings
  before the step's first propagation (``mask_views: all``: before every propagation of the step,
  as RLMRec's SGL and SimGCL mask their augmented views too);
- ``none``: the base alone.

``cold_start`` (``knn``, ``projector``; default ``none``) scores users and items without training
interactions from their profiles, in ``predict`` and ``full_sort_predict``:
:mod:`recbole_llm.model.cold_start` (with ``align: none``, for the base model alone).

``calculate_loss`` returns the base's loss term(s) followed by ``align_weight * alignment``, so
RecBole's trainer logs the alignment as its own loss column. The alignment reuses the embeddings of
the step's first ``forward()`` call: it never propagates a second time.

How the alignment reaches a base's embeddings is the base's *adapter*: see
:mod:`recbole_llm.model.adapters`, where every supported base's adapter is declared.
"""

import functools

import torch

from recbole_llm.data.loader import profile_tensors
from recbole_llm.model.adapters import DEFAULT_ADAPTER, adapter_for
from recbole_llm.model.alignment import alignment_from_config
from recbole_llm.model.cold_start import ColdStartRecommender
from recbole_llm.model.lookup import find_model

RLM_SUFFIX = "_RLM"
_CLASSES = {}


class _Step:
    """What one training step captured: the first forward output and the Gen-masked nodes."""

    def __init__(self):
        self.output = None
        self.seeds = None


class AlignedRecommender(ColdStartRecommender):
    r"""Mixin placed before the base class by :func:`rlm`; reads the alignment config keys (checked
    when the Config was built: :data:`recbole_llm.model.settings.MODEL_KEYS`) and the profile vectors
    (through the read-only :mod:`recbole_llm.data.loader`)."""

    rlm_adapter = DEFAULT_ADAPTER

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.align = config["align"]
        self.mask_views = config["mask_views"]
        self.alignment = None
        self._step = None
        if not self.reads_profiles(config):
            return
        user_profile, item_profile = profile_tensors(config, dataset)
        # One buffer, users then items (RecBole's node order): moves with .to(), is not trained, and
        # is not written to checkpoints (the profile store is its single source).
        self.register_buffer("node_profile", torch.cat([user_profile, item_profile]).to(self.device), persistent=False)
        if self.align == "none":
            self.init_cold_start(config, dataset, self.node_profile.cpu())
            return
        ego_dim = None
        if self.align == "gen":
            ego_method = self.rlm_adapter.ego_method
            if ego_method is None or not hasattr(type(self), ego_method):
                raise ValueError(f"align=gen needs the ego embeddings of {type(self).__name__}; its adapter has no ego_method")
            ego_dim = self.rlm_adapter.ego_dim(self, config)
        self.align_weight, self.alignment = alignment_from_config(
            config, self.node_profile.shape[1], self.rlm_adapter.embedding_dim(self, config), ego_dim
        )
        if self.align == "gen":
            self.register_buffer("mask_candidates", self._real_nodes(dataset).to(self.device), persistent=False)
        self.alignment.to(self.device)
        self.init_cold_start(config, dataset, self.node_profile.cpu())

    @classmethod
    def reads_profiles(cls, config):
        r"""Whether a model of this config reads profile vectors (the entry points build them first)."""
        return config["align"] != "none" or config["cold_start"] != "none"

    @property
    def user_profile(self):
        return self.node_profile[: self.n_users]

    @property
    def item_profile(self):
        return self.node_profile[self.n_users :]

    def _real_nodes(self, dataset):
        # Node ids of the users and items with training interactions. RecBole's padding rows 0 and
        # n_users have none; nor does an item seen only in valid/test: masked, such a node has no
        # neighbour to be reconstructed from (and bases that normalise each layer, as NGCF, blow up
        # on its all-zero output).
        interactions = dataset.inter_matrix(form="csr")
        users = torch.from_numpy(interactions.getnnz(axis=1)).nonzero().view(-1)
        items = torch.from_numpy(interactions.getnnz(axis=0)).nonzero().view(-1)
        return torch.cat([users, items + self.n_users])

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        if self._step is not None and self._step.output is None:
            self._step.output = output
        return output

    def mask_ego(self, ego_embeddings):
        r"""Gen: mask the ego embeddings of the step's first propagation (training only); with
        ``mask_views: all``, the step's later propagations get the same nodes masked."""
        step = self._step
        if self.align != "gen" or step is None:
            return ego_embeddings
        if step.seeds is None:
            masked, step.seeds = self.alignment.mask(ego_embeddings, self.mask_candidates)
            return masked
        if self.mask_views == "all":
            return self.alignment.replace(ego_embeddings, step.seeds)
        return ego_embeddings

    def draw_reconstructed_nodes(self):
        r"""Gen on a base without propagation (BPR): draw this step's nodes as :meth:`mask_ego`
        does, masking nothing (a masked node's output would be the token itself)."""
        self._step.seeds = self.alignment.draw(self.mask_candidates)

    def calculate_loss(self, interaction):
        if self.alignment is None:
            return super().calculate_loss(interaction)
        self._step = _Step()
        try:
            losses = super().calculate_loss(interaction)
            if self._step.output is None:
                raise RuntimeError(f"{type(self).__name__}: the base's calculate_loss never called forward(); give rlm() an adapter")
            user_all, item_all = self.rlm_adapter.final_embeddings(self, self._step.output)
            align_loss = self.align_weight * self.alignment_loss(interaction, user_all, item_all)
        finally:
            self._step = None
        losses = losses if isinstance(losses, tuple) else (losses,)
        return self.rlm_adapter.loss_terms(losses, align_loss)

    def alignment_loss(self, interaction, user_all, item_all):
        if self.align == "con":
            user, pos, neg = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
            return self.alignment(user_all, item_all, user, pos, neg, self.user_profile, self.item_profile)
        return self.alignment(torch.cat([user_all, item_all]), self.node_profile, self._step.seeds)


def _masking(method):
    @functools.wraps(method)
    def ego_embeddings(self, *args, **kwargs):
        return self.mask_ego(method(self, *args, **kwargs))

    return ego_embeddings


def rlm(base, adapter=None):
    r"""Return ``<Base>_RLM``: ``base`` with RLMRec alignment, registered under that name.

    The class lives in this module's namespace, so checkpoints and multi-process runs that pickle
    it by name find it again (built on demand for RecBole and plugin bases).
    """
    name = base.__name__ + RLM_SUFFIX
    adapter = adapter or adapter_for(base)
    cached = _CLASSES.get(name)
    if cached is not None and cached.rlm_base is base and cached.rlm_adapter is adapter:
        return cached
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"{base.__name__} with RLMRec alignment (``align``: con, gen or none).",
        "rlm_base": base,
        "rlm_adapter": adapter,
    }
    parent = base
    methods = adapter.methods(base)
    if methods:  # in a class under the mixin, whose forward() capture must stay on top
        parent = type(f"{base.__name__}Adapted", (base,), {"__module__": __name__, **methods})
    ego = adapter.ego_method
    if ego is not None and hasattr(parent, ego):
        namespace[ego] = _masking(getattr(parent, ego))
    # Sequential bases get their adapter's mixin (recbole_llm.model.sequential).
    cls = type(name, (adapter.mixin or AlignedRecommender, parent), namespace)
    _CLASSES[name] = cls
    globals()[name] = cls
    return cls


def aligned_model(name):
    r"""``<Base>_RLM`` by name: the class :func:`rlm` made last under that name (a user's own
    ``rlm(MyModel)`` included), else :func:`rlm` of the plugin's or RecBole's model ``<Base>``."""
    return _CLASSES.get(name) or rlm(find_model(name[: -len(RLM_SUFFIX)]))


def __getattr__(name):
    # Unpickling `recbole_llm.model.rlm.<Base>_RLM` in a fresh process builds the class on demand.
    if name.endswith(RLM_SUFFIX):
        return aligned_model(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
