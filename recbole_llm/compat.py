"""Compatibility shims that let RecBole 1.2.1 run on current torch and scipy.

This is the ONLY module of recbole-llm that changes third-party behaviour at run time. Every shim
is applied by :func:`apply` (called when :mod:`recbole_llm` is imported), is idempotent, touches
nothing on disk, and is tested in ``tests/test_compat.py``.

1. numpy's removed aliases (``np.float``, ``np.int``, ``np.bool`` ...) that RecBole's data code
   uses. RecBole sets them only when a ``Config`` is built, so a process that only reloads a
   checkpoint (``load_data_and_model``) fails without this.
2. ``scipy.sparse.dok_matrix._update`` -- removed in scipy 1.13. RecBole's LightGCN, NGCF, NCL,
   GCMC, SpectralCF, KGIN and MCCLK build their adjacency matrix with it. The shim restores the old
   meaning (a bulk dict update of the stored entries, no bounds checks) only where it is missing.
3. ``torch.load`` in RecBole's trainer -- torch 2.6 changed the default to ``weights_only=True``,
   and RecBole's checkpoints pickle its ``Config`` (classes, enums, ``torch.device``), so resuming
   (``--checkpoint``) and ``evaluate(load_best_model=True)`` fail. Instead of a global switch that
   would also trust every other pickle in the process, the trainer module alone sees a ``torch``
   whose ``load`` defaults to ``weights_only=False``; :func:`load_checkpoint` does the same for
   recbole-llm's own ``load_data_and_model``. Only load checkpoints you wrote or trust: a pickle
   can run code.
4. Autograd's anomaly detection, which importing RecBole's sequential models switches on for the
   whole process (``recbole/model/sequential_recommender/sine.py`` calls
   ``torch.autograd.set_detect_anomaly(True)`` at import). The plugin needs those models (its
   adapters, ``SASRec_RLM`` ...), and in anomaly mode every backward node is checked for NaN
   with a host sync: ~25% of a LightGCN training step on ml-100k, more with each loss term
   added. They are imported here once, and the anomaly setting is put back as it was before:
   a user who switched it on keeps it.
"""

import importlib

import types

import numpy as np
import scipy.sparse as sp
import torch


NUMPY_ALIASES = {
    "bool": "bool_", "int": "int_", "float": "float_", "complex": "complex_",
    "object": "object_", "str": "str_", "long": "int_", "unicode": "unicode_",
}


def _dok_update(self, data):
    # scipy < 1.13 semantics: dict.update of the raw entries; RecBole passes valid indices only.
    self._dict.update(data)


def load_checkpoint(path, map_location=None):
    """Read a RecBole checkpoint (a pickled dict holding the Config) from a trusted file."""
    return torch.load(path, map_location=map_location, weights_only=False)


class _CheckpointTorch(types.ModuleType):
    """``torch`` as RecBole's trainer module sees it: the real module, but ``load`` reads RecBole's
    own checkpoints (which pickle its Config) instead of refusing them."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(f, *args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(f, *args, **kwargs)


def _import_keeping_anomaly_mode(module):
    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    importlib.import_module(module)
    torch.autograd.set_detect_anomaly(enabled, check_nan)


def apply():
    """Install the shims that this environment needs; safe to call any number of times."""
    for alias, name in NUMPY_ALIASES.items():
        if alias not in np.__dict__ and hasattr(np, name):
            setattr(np, alias, getattr(np, name))
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = _dok_update

    _import_keeping_anomaly_mode("recbole.model.sequential_recommender")

    import recbole.trainer.trainer as recbole_trainer

    if not isinstance(recbole_trainer.torch, _CheckpointTorch):
        recbole_trainer.torch = _CheckpointTorch()
