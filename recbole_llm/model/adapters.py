r"""
Adapters: where each supported base keeps the embeddings RLM aligns
####################################################################

Every supported base's adapter is declared here, in :data:`ADAPTERS`; :func:`register_adapter`
adds a user's own.

Adapter protocol
----------------
An :class:`EmbeddingAdapter` tells the alignment where a base keeps its embeddings:

- ``final_embeddings(model, output)``: the (users, items) final embeddings, [n_users, d] and
  [n_items, d], given the output of the first ``forward()`` call of a training step;
- ``embedding_dim(model, config)``: d, the width of those final embeddings;
- ``ego_method``: name of the base method that returns the ego (layer-0) embeddings of all users
  then all items; Gen replaces masked rows there. ``None`` if the base has none (Gen unavailable).
- ``ego_dim(model, config)``: the width of the ego embeddings, that of Gen's mask token
  (``embedding_size`` by default; NGCF, GCCF and SpectralCF concatenate layers, so their final
  embeddings are wider than their ego embeddings);
- ``methods(base)``: methods that ``<Base>_RLM`` overrides in ``base`` (default none), e.g. an
  ``ego_method`` and a ``forward`` reading it for a base that builds its ego embeddings inline (RecBole's SGL);
- ``eval_embeddings(model)``: the (users, items) final embeddings outside training, which
  cold-start scoring scores with (default: ``final_embeddings`` of ``model.forward()``);
- ``loss_terms(losses, align_loss)``: the loss tuple ``calculate_loss`` returns (default: the base's
  terms, then the alignment; NCL keeps its prototype loss last, which NCLTrainer drops in warm-up).

The default adapter fits LightGCN-style bases (``forward()`` returns users, items first and
``get_ego_embeddings()`` exists). Give a different one with ``rlm(Base, adapter)`` or
:func:`register_adapter`.

The adapters of RecBole's and the plugin's bases:

=================  =====================================================================
base               adapter
=================  =====================================================================
LightGCN, SimGCL,  the default: ``forward()`` returns (users, items, ...) and
DCCF, AutoCF       ``get_ego_embeddings()`` gives the ego embeddings. DCCF computes its
                   contrastive views inside that one propagation, so under Gen they see the
                   masked ego embeddings like the main view; SimGCL's perturbed views are
                   separate ``forward`` calls after the main one: masked only with
                   ``mask_views: all``. AutoCF's
                   training view is its masked-graph ``forward``; its seed scoring reads the
                   embedding tables directly, never masked.
NCL                :class:`NCLAdapter`: the default, but the alignment term goes before NCL's
                   prototype loss (see there). NCL's structural and prototype views come from
                   its one propagation: under Gen they see the masked ego embeddings.
SGL                :class:`SGLAdapter` (the plugin's SGL, which ``SGL_RLM`` builds on):
                   ``forward(graph)``; the step's first forward is the main graph's, the
                   two augmented views come after it, masked only with ``mask_views: all``.
                   RecBole's SGL
                   (a user's ``rlm(recbole SGL)``): :class:`RecBoleSGLAdapter`, which adds
                   a ``get_ego_embeddings()`` and a ``forward`` reading it.
NGCF, SpectralCF,  :class:`ConcatLayersAdapter`: the final embeddings concatenate the layers,
GCCF               wider than the ego embeddings.
DGCF               ego embeddings from ``_get_ego_embeddings()``.
BPR                :class:`EmbeddingTableAdapter`: no propagation; the final embeddings are the
                   embedding tables.
SASRec, GRU4Rec,   :class:`SequentialAdapter` (any RecBole ``SequentialRecommender``): the
other sequential   ``forward()`` output is the sequence representation the base scores with,
models             ``item_embedding`` holds the item embeddings (input and output); the
                   per-position outputs are those ``forward()`` hands ``gather_indexes``.
                   Its models get :class:`~recbole_llm.model.sequential.AlignedSequentialRecommender`.
BERT4Rec           :class:`BERT4RecAdapter`: masks its input itself; its masked positions'
                   outputs are its representations, its own masking is Gen's.
=================  =====================================================================

A sequential adapter has, instead of the graph members above, ``mixin`` (the aligned mixin its
models get), ``masks_itself``, ``input_embedding(model)``, ``item_embeddings(model)``,
``sequences(model, interaction, step)`` (representations and their users), ``items(model,
interaction)`` (the step's item ids, per group) and ``masked_outputs(model, interaction, step)``
(Gen's masked positions' outputs and their items).
"""

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.general_recommender import BPR, DGCF, NCL, NGCF, SpectralCF
from recbole.model.general_recommender import SGL as RecBoleSGL
from recbole.model.sequential_recommender import BERT4Rec

from recbole_llm.model.general_recommender.gccf import GCCF
from recbole_llm.model.general_recommender.sgl import SGL, propagate
from recbole_llm.model.sequential import AlignedSequentialRecommender


class EmbeddingAdapter:
    r"""How the alignment reaches a base model's embeddings (see the module docstring)."""

    ego_method = "get_ego_embeddings"
    mixin = None  # the aligned mixin of its models; None: recbole_llm.model.rlm.AlignedRecommender

    def final_embeddings(self, model, output):
        return output[0], output[1]

    def embedding_dim(self, model, config):
        return config["embedding_size"]

    def eval_embeddings(self, model):
        return self.final_embeddings(model, model.forward())

    def ego_dim(self, model, config):
        return config["embedding_size"]

    def methods(self, base):
        return {}

    def loss_terms(self, losses, align_loss):
        return (*losses, align_loss)


DEFAULT_ADAPTER = EmbeddingAdapter()


def table_embeddings(model):
    r"""The embedding tables, all users then all items: the ego embeddings of SGL and BPR."""
    return torch.cat([model.user_embedding.weight, model.item_embedding.weight])


class ConcatLayersAdapter(EmbeddingAdapter):
    r"""Bases whose final embedding concatenates its layers: ``width(model)`` is its width."""

    def __init__(self, width):
        self.width = width

    def embedding_dim(self, model, config):
        return self.width(model)


class SGLAdapter(EmbeddingAdapter):
    r"""The plugin's SGL: ``forward(graph)``; outside training its embeddings are the main graph's."""

    def eval_embeddings(self, model):
        return model.forward(model.train_graph)


class RecBoleSGLAdapter(SGLAdapter):
    r"""RecBole's SGL: gives ``<SGL>_RLM`` an ego method and a ``forward`` that reads it.

    The ``forward`` is RecBole SGL's (mean of the layers over ``graph``, a sparse graph or one per layer).
    """

    def methods(self, base):
        def forward(self, graph):
            return propagate(self, graph, "mean")

        return {"get_ego_embeddings": table_embeddings, "forward": forward}


class EmbeddingTableAdapter(EmbeddingAdapter):
    r"""Matrix factorisation (BPR): the final embeddings are the embedding tables.

    Without propagation a masked node's output would be the mask token itself, so Gen cannot
    reconstruct through masking here: it draws the step's ``mask_ratio`` share of nodes as usual
    and reconstructs their profiles from their own embeddings, masking nothing.
    """

    def methods(self, base):
        return {"get_ego_embeddings": table_embeddings}

    def final_embeddings(self, model, output):
        if model.align == "gen":
            model.draw_reconstructed_nodes()
        return model.user_embedding.weight, model.item_embedding.weight

    def eval_embeddings(self, model):
        return model.user_embedding.weight, model.item_embedding.weight


class NCLAdapter(EmbeddingAdapter):
    r"""RecBole's NCL: the alignment goes before NCL's prototype loss, which must stay the last term
    (NCLTrainer drops the last term during its ``warm_up_step`` epochs)."""

    def loss_terms(self, losses, align_loss):
        return (*losses[:-1], align_loss, losses[-1])


class DGCFAdapter(EmbeddingAdapter):
    ego_method = "_get_ego_embeddings"


class SequentialAdapter(EmbeddingAdapter):
    r"""RecBole's ``SequentialRecommender`` s whose ``forward(item_seq, item_seq_len)`` returns the
    sequence representation they score with (SASRec, GRU4Rec ...), gathered from per-position
    outputs by ``gather_indexes``, and whose ``item_embedding`` embeds both the input sequence and
    the scored items."""

    ego_method = None
    mixin = AlignedSequentialRecommender
    masks_itself = False

    def input_embedding(self, model):
        embedding = getattr(model, "item_embedding", None)
        if not isinstance(embedding, torch.nn.Embedding):
            raise ValueError(
                f"{type(model).__name__}: the sequential adapter reads the item embedding `item_embedding` (an "
                "nn.Embedding), which this model has not; give rlm() a SequentialAdapter subclass that says where it is"
            )
        return embedding

    def embedding_dim(self, model, config):
        return self.input_embedding(model).embedding_dim

    def item_embeddings(self, model):
        return self.input_embedding(model).weight[: model.n_items]

    def sequences(self, model, interaction, step):
        return step.output, interaction[model.USER_ID]

    def items(self, model, interaction):
        groups = [interaction[model.POS_ITEM_ID]]
        if model.NEG_ITEM_ID in interaction:  # BPR's sampled negatives (CE samples none)
            groups.append(interaction[model.NEG_ITEM_ID])
        return groups

    def masked_outputs(self, model, interaction, step):
        if step.seeds is None:
            raise RuntimeError(
                f"{type(model).__name__}: align=gen masks the step's item sequence where item_embedding looks it "
                "up, and forward() never looked it up there; give rlm() a SequentialAdapter subclass for this model"
            )
        if step.positions is None:
            raise RuntimeError(
                f"{type(model).__name__}: align=gen reads the per-position outputs forward() hands gather_indexes, "
                "and forward() never called it; give rlm() a SequentialAdapter subclass for this model"
            )
        outputs = step.positions.reshape(-1, step.positions.shape[-1])
        return outputs[step.seeds], step.item_seq.reshape(-1)[step.seeds]


class BERT4RecAdapter(SequentialAdapter):
    r"""RecBole's BERT4Rec: trained on the positions its data transform masked (``MASK_INDEX``, with
    its own mask token), scoring each masked position's output. Con aligns the mean of a sequence's
    masked outputs with its user's profile and the masked (and, under BPR, the negative) items
    with theirs; Gen reconstructs the masked items' profiles from those outputs, masking nothing more."""

    masks_itself = True

    def _masked(self, model, interaction, step):
        index = interaction[model.MASK_INDEX]  # [B, mask_len], 0 = padding, as BERT4Rec reads it
        outputs = step.output.gather(1, index.unsqueeze(-1).expand(-1, -1, step.output.shape[-1]))
        return outputs, index > 0

    def sequences(self, model, interaction, step):
        outputs, targets = self._masked(model, interaction, step)
        counts = targets.sum(dim=1, keepdim=True)
        rows = counts.view(-1) > 0
        mean = (outputs * targets.unsqueeze(-1)).sum(dim=1) / counts.clamp(min=1)
        return mean[rows], interaction[model.USER_ID][rows]

    def items(self, model, interaction):
        targets = interaction[model.MASK_INDEX] > 0
        groups = [interaction[model.POS_ITEMS][targets]]
        if model.loss_type == "BPR":
            groups.append(interaction[model.NEG_ITEMS][targets])
        return groups

    def masked_outputs(self, model, interaction, step):
        outputs, targets = self._masked(model, interaction, step)
        outputs, items = outputs[targets], interaction[model.POS_ITEMS][targets]
        order = torch.randperm(len(items), device=items.device)  # so that the first sample_size are uniform
        return outputs[order], items[order]


ADAPTERS = {
    SequentialRecommender: SequentialAdapter(),
    BERT4Rec: BERT4RecAdapter(),
    SGL: SGLAdapter(),
    RecBoleSGL: RecBoleSGLAdapter(),
    BPR: EmbeddingTableAdapter(),
    NCL: NCLAdapter(),
    DGCF: DGCFAdapter(),
    NGCF: ConcatLayersAdapter(lambda model: sum(model.hidden_size_list)),
    SpectralCF: ConcatLayersAdapter(lambda model: model.emb_dim * (model.n_layers + 1)),
    GCCF: ConcatLayersAdapter(lambda model: model.final_embedding_size),
}


def register_adapter(base, adapter):
    r"""Use ``adapter`` for ``base`` and its subclasses in later :func:`~recbole_llm.rlm` calls."""
    ADAPTERS[base] = adapter


def adapter_for(base):
    r"""The adapter of ``base``'s nearest class in :data:`ADAPTERS`, else :data:`DEFAULT_ADAPTER`."""
    for cls in base.__mro__:
        if cls in ADAPTERS:
            return ADAPTERS[cls]
    return DEFAULT_ADAPTER
