r"""
RLM for sequential recommenders
################################################

Reference:
    Xubin Ren et al. "Representation Learning with Large Language Models for Recommendation." in WWW 2024.

:func:`~recbole_llm.rlm` puts :class:`AlignedSequentialRecommender` before a RecBole
``SequentialRecommender`` (SASRec, GRU4Rec, BERT4Rec, a user's own): the base model unchanged plus
one alignment term, chosen by the ``align`` config key, computed from the step's one forward pass:

- ``con``: the sequence representation the base scores with is aligned with the user's profile
  (InfoNCE against all users' profiles, or the batch's with ``align_user_negatives: batch``), and
  the step's item embeddings (the positives, and the negatives under BPR) with their item profiles
  (:meth:`~recbole_llm.model.alignment.ContrastiveAlignment.align_sequences`);
- ``gen``: a ``mask_ratio`` share of the batch's input-sequence positions is looked up as a learned
  mask token instead of the item's embedding, and the base's output at each masked position
  reconstructs the masked item's profile (:class:`~recbole_llm.model.alignment.GenerativeAlignment`);
  a base that masks its input itself (BERT4Rec) keeps its own masking and mask token, and its
  masked positions' outputs reconstruct their items' profiles;
- ``none``: the base alone.

Where a base keeps its representations is its adapter's business
(:class:`~recbole_llm.model.adapters.SequentialAdapter`). Users without a profile in the store are
handled by ``align_users``: ``all`` (every user aligned; ``profile_missing`` decides what a
missing one becomes), ``profiled`` (left out of the user term, logged) or ``none`` (no user term).
"""

from logging import getLogger

import torch

from recbole_llm.data.loader import profiles_with_presence
from recbole_llm.model.alignment import alignment_from_config


class SequenceStep:
    r"""What one training step captured: the first forward output, the per-position outputs the
    base gathered its representation from, and the Gen-masked positions of the input sequence."""

    def __init__(self, item_seq):
        self.item_seq = item_seq
        self.output = None
        self.positions = None
        self.seeds = None


class AlignedSequentialRecommender:
    r"""Mixin placed before a sequential base class by :func:`~recbole_llm.rlm`."""

    rlm_adapter = None  # set by rlm()

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.align = config["align"]
        self.alignment = None
        self._step = None
        if not self.reads_profiles(config):
            return
        self.align_users = config["align_users"]
        user_missing = None if self.align_users == "all" else "skip"
        user_profile, item_profile, user_present = profiles_with_presence(config, dataset, user_missing)
        # Buffers: they move with .to(), are not trained, and are not written to checkpoints (the
        # profile store is their single source).
        self.register_buffer("user_profile", user_profile.to(self.device), persistent=False)
        self.register_buffer("item_profile", item_profile.to(self.device), persistent=False)
        self.register_buffer("aligned_users", self._aligned_users(user_present, dataset).to(self.device), persistent=False)
        self.align_weight, self.alignment = alignment_from_config(
            config, item_profile.shape[1], self.rlm_adapter.embedding_dim(self, config)
        )
        if self.align == "con":
            # Each user's place among the user InfoNCE's candidates (align_user_negatives: all).
            candidate_index = torch.full((len(user_profile),), -1, dtype=torch.long)
            candidate_index[self.aligned_users] = torch.arange(len(self.aligned_users))
            self.register_buffer("user_candidate_index", candidate_index.to(self.device), persistent=False)
        elif not self.rlm_adapter.masks_itself:
            self.rlm_adapter.input_embedding(self).register_forward_hook(self._mask_input_items)
        self.alignment.to(self.device)

    @classmethod
    def reads_profiles(cls, config):
        r"""Whether a model of this config reads profile vectors (the entry points build them first)."""
        return config["align"] != "none"

    def _aligned_users(self, user_present, dataset):
        r"""The users the user term aligns (see ``align_users``), logging those it leaves out."""
        if self.align_users == "none":
            getLogger().info(f"{type(self).__name__}: align_users=none: sequences are not aligned with user profiles.")
            return torch.zeros(0, dtype=torch.long)
        if self.align_users == "all":
            return torch.arange(1, len(user_present))
        left_out = int((~user_present[1:]).sum())
        if left_out:
            getLogger().warning(
                f"{type(self).__name__}: {left_out} of {len(user_present) - 1} users of {dataset.dataset_name} have no "
                "profile in the store; align_users=profiled leaves their sequences out of the user alignment."
            )
        return user_present.nonzero().view(-1)

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        if self._step is not None and self._step.output is None:
            self._step.output = output
        return output

    def gather_indexes(self, output, gather_index):
        # The base's per-position outputs [B, L, d], before it picks each sequence's last one.
        if self._step is not None and self._step.positions is None:
            self._step.positions = output
        return super().gather_indexes(output, gather_index)

    def _mask_input_items(self, module, inputs, output):
        r"""Gen (forward hook of the input item embedding): inside a training step, the lookup of
        the step's item sequence gets the mask token at a ``mask_ratio`` share of its real positions."""
        step = self._step
        if step is None or step.seeds is not None or inputs[0] is not step.item_seq:
            return None
        positions = (step.item_seq.reshape(-1) > 0).nonzero().view(-1)
        masked, step.seeds = self.alignment.mask(output.reshape(-1, output.shape[-1]), positions)
        return masked.view_as(output)

    def calculate_loss(self, interaction):
        if self.alignment is None:
            return super().calculate_loss(interaction)
        self._step = SequenceStep(interaction[self.ITEM_SEQ])
        try:
            losses = super().calculate_loss(interaction)
            if self._step.output is None:
                raise RuntimeError(f"{type(self).__name__}: the base's calculate_loss never called forward(); give rlm() an adapter")
            align_loss = self.align_weight * (self._con_loss(interaction) if self.align == "con" else self._gen_loss(interaction))
        finally:
            self._step = None
        losses = losses if isinstance(losses, tuple) else (losses,)
        return (*losses, align_loss)

    def _con_loss(self, interaction):
        adapter = self.rlm_adapter
        sequences, users = adapter.sequences(self, interaction, self._step)
        if self.align_users != "all":
            keep = self.user_candidate_index[users] >= 0
            sequences, users = sequences[keep], users[keep]
        return self.alignment.align_sequences(
            sequences,
            users,
            self.user_profile,
            adapter.item_embeddings(self),
            adapter.items(self, interaction),
            self.item_profile,
            candidates=self.aligned_users,
            positive=self.user_candidate_index[users],
        )

    def _gen_loss(self, interaction):
        outputs, items = self.rlm_adapter.masked_outputs(self, interaction, self._step)
        sample = self.alignment.sample_size
        outputs, items = outputs[:sample], items[:sample]  # masked in random order: a uniform sample
        # Each masked item once among the candidates: a popular item masked at several positions
        # is no negative of itself.
        ids, positive = torch.unique(items, return_inverse=True)
        return self.alignment.reconstruction_loss(outputs, self.item_profile[ids], positive)
