r"""RecBole's trainers, run unchanged, with what plugin models and CPU machines need on top.

:func:`get_trainer` picks the trainer RecBole picks for the model (for ``<Base>_RLM``: the base's,
e.g. ``NCLTrainer`` for ``NCL_RLM``; nothing is written into RecBole's modules to find it) and
returns it with :class:`PluginTrainerMixin`:

- **TensorBoard**: RecBole writes one curve per loss part (``Loss/Train0``, ``Loss/Train1`` ...).
  An aligned model also gets ``Loss/Train`` (the total, the tag a plain model's loss has, so the
  two overlay), ``Loss/Train/base`` and ``Loss/Train/align``.
- **Multi-process on CPUs**: RecBole wraps the model in ``DistributedDataParallel`` with
  ``device_ids=[local_rank]``, which only a GPU module accepts; on the CPU (gloo, see
  :class:`~recbole_llm.config.Config`) the model is wrapped without device ids.
- **Multi-process checkpoints**: every rank uses rank 0's checkpoint file name (RecBole names it
  by each process's clock) and waits for rank 0 to finish writing it before loading it; the
  checkpoint directory is made race-free (RecBole's check-then-create failed one rank of a run).
- **Group metrics**: the evaluation collector also gathers what the group metrics need
  (:mod:`recbole_llm.evaluation`: cold/warm items, user history length, item popularity).
- **Distinct checkpoint names**: runs started in the same second in one directory (hyperparameter
  trials on small data) get ``-1``, ``-2`` ... instead of overwriting each other's checkpoint.

Non-persistent buffers (an RLM model's profile vectors) are not broadcast by DDP at every step:
every rank reads them from the same profile store, as a checkpoint reload does.
"""

import os

import recbole.trainer
import torch.distributed as dist
from recbole.trainer import AbstractTrainer
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import get_trainer as recbole_get_trainer
from torch.nn.parallel import DistributedDataParallel

from recbole_llm.evaluation import metrics as _group_metrics  # noqa: F401  (registers them with RecBole's evaluator)
from recbole_llm.evaluation.collector import GroupCollector
from recbole_llm.utils import get_model

_TRAINERS = {}


class _DistributedSetup(AbstractTrainer):
    r"""Sits between RecBole's ``Trainer`` and ``AbstractTrainer`` in the MRO of every plugin
    trainer, so that ``Trainer.__init__``'s call to ``super().__init__`` -- which builds the DDP
    wrapper -- lands here."""

    def __init__(self, config, model):
        if not config["single_spec"]:
            model._ddp_params_and_buffers_to_ignore = _non_persistent_buffers(model)
        if config["single_spec"] or config["device"].type == "cuda":
            return super().__init__(config, model)
        # RecBole's wrapping minus what only GPUs take: device_ids, SyncBatchNorm.
        self.config = config
        self.model = model
        self.distributed_model = DistributedDataParallel(model)


def _non_persistent_buffers(model):
    return sorted(set(dict(model.named_buffers())) - set(model.state_dict()))


class PluginTrainerMixin:
    r"""What :func:`plugin_trainer` adds to a RecBole trainer class (see the module docstring)."""

    def __init__(self, config, model):
        # RecBole's Trainer makes checkpoint_dir by check-then-create: the processes of one
        # distributed run race on it (FileExistsError in one rank); creating it first is idempotent.
        os.makedirs(config["checkpoint_dir"], exist_ok=True)
        super().__init__(config, model)
        self.eval_collector = GroupCollector(config)
        if not config["single_spec"]:
            names = [self.saved_model_file]
            dist.broadcast_object_list(names, src=0)
            self.saved_model_file = names[0]
        elif os.path.exists(self.saved_model_file):
            self.saved_model_file = _unused_name(self.saved_model_file)

    def _add_train_loss_to_tensorboard(self, epoch_idx, losses, tag="Loss/Train"):
        super()._add_train_loss_to_tensorboard(epoch_idx, losses, tag)
        if isinstance(losses, tuple) and getattr(self.model, "alignment", None) is not None:
            # RLM models return the base's loss part(s) followed by the weighted alignment loss.
            self.tensorboard.add_scalar(tag, sum(losses), epoch_idx)
            self.tensorboard.add_scalar(f"{tag}/base", sum(losses[:-1]), epoch_idx)
            self.tensorboard.add_scalar(f"{tag}/align", losses[-1], epoch_idx)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and not self.config["single_spec"]:
            dist.barrier()  # only rank 0 writes the checkpoint that every rank is about to read
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)


def _unused_name(path):
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(f"{stem}-{n}{ext}"):
        n += 1
    return f"{stem}-{n}{ext}"


def plugin_trainer(trainer_class):
    r"""Return ``trainer_class`` (a RecBole trainer) with :class:`PluginTrainerMixin`; trainers that
    do not derive from RecBole's ``Trainer`` (decision trees) are returned as they are."""
    if not issubclass(trainer_class, RecBoleTrainer):
        return trainer_class
    if trainer_class not in _TRAINERS:
        name = trainer_class.__name__
        cls = type(name, (PluginTrainerMixin, trainer_class, _DistributedSetup), {"__module__": __name__, "__qualname__": name})
        cls.__doc__ = f"RecBole's ``{name}`` with :class:`PluginTrainerMixin`."
        _TRAINERS[trainer_class] = cls
    return _TRAINERS[trainer_class]


def get_trainer(model_type, model_name):
    r"""The trainer class RecBole uses for ``model_name``, with the plugin's additions.

    ``<Base>_RLM`` trains with the trainer of its base's nearest class that RecBole has one for
    (``recbole.trainer.<Class>Trainer``, e.g. ``NCLTrainer`` runs NCL's E-step), else by model type.
    """
    base = getattr(get_model(model_name), "rlm_base", None)
    if base is not None:
        own = (getattr(recbole.trainer, cls.__name__ + "Trainer", None) for cls in base.__mro__)
        trainer = next((t for t in own if t is not None), None)
        return plugin_trainer(trainer or recbole_get_trainer(model_type, base.__name__))
    return plugin_trainer(recbole_get_trainer(model_type, model_name))


Trainer = plugin_trainer(RecBoleTrainer)
