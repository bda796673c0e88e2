"""RecBole ``Config`` that knows plugin models, layers the plugin's YAML properties, runs several
processes on CPUs as well as GPUs, and refuses configs that would log a secret."""

import os
import re
import sys

import recbole
from recbole.config import Config as RecBoleConfig

from recbole_llm.utils import get_model

PLUGIN_PROPERTIES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")
RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.abspath(recbole.__file__)), "properties")
DIST_BACKENDS = ("nccl", "gloo")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Config(RecBoleConfig):
    r"""RecBole's Config for plugin models.

    Internal properties are layered, later files winning:
    RecBole ``overall.yaml`` < plugin ``overall.yaml`` < the model YAML of every class in the model's
    inheritance chain, base first (so ``LightGCN_RLM`` inherits ``LightGCN.yaml``), from RecBole's and
    then the plugin's ``properties/model/`` < RecBole's and then the plugin's ``properties/dataset/<dataset>.yaml``.
    External config files, dicts and the command line override all of them, as in RecBole.

    Multi-process runs (``local_rank`` set, see :func:`recbole_llm.quick_start.run`) use the
    ``dist_backend`` key: ``nccl`` or ``gloo``; unset means ``nccl`` on GPUs and ``gloo`` on CPUs,
    where RecBole itself only knows NCCL on GPUs.

    Args:
        command_line (bool or list): where ``--key=value`` arguments come from. ``True``: ``sys.argv``,
            as RecBole reads them; a list: these arguments instead (a command whose own options
            are not RecBole keys gives what its parser left); ``False``: none (a Ray Tune worker's
            ``sys.argv`` is Ray's own).
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, command_line=True):
        self._command_line = command_line
        super().__init__(model, dataset, config_file_list, config_dict)

    def _load_cmd_line(self):
        if self._command_line is True:
            return super()._load_cmd_line()
        # RecBole's parser reads sys.argv itself (and warns about every argument it cannot use).
        argv = sys.argv
        sys.argv = [argv[0], *(self._command_line or [])]
        try:
            return super()._load_cmd_line()
        finally:
            sys.argv = argv

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self._update_internal_config_dict(os.path.join(PLUGIN_PROPERTIES, "overall.yaml"))
        for path in self._model_property_files(model_class):
            self._update_internal_config_dict(path)
        for root in (RECBOLE_PROPERTIES, PLUGIN_PROPERTIES):
            path = os.path.join(root, "dataset", f"{dataset}.yaml")
            if os.path.isfile(path):
                config_dict = self._update_internal_config_dict(path) or {}
                self.parameters["Dataset"] += [k for k in config_dict if k not in self.parameters["Dataset"]]

    @staticmethod
    def _model_property_files(model_class):
        files = []
        for cls in reversed(model_class.__mro__):
            for root in (RECBOLE_PROPERTIES, PLUGIN_PROPERTIES):
                path = os.path.join(root, "model", f"{cls.__name__}.yaml")
                # A plugin model may share its RecBole parent's name (LightGCN): read each file once.
                if os.path.isfile(path) and path not in files:
                    files.append(path)
        return files

    def _set_default_parameters(self):
        super()._set_default_parameters()
        self._check_no_secret()

    def _init_device(self):
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()
        self._init_distributed()

    def _init_distributed(self):
        r"""RecBole's multi-process setup (``Config._init_device``) with the backend and device
        chosen by the machine: NCCL and ``cuda:<local_rank>`` on GPUs, gloo and the CPU otherwise."""
        import torch

        config = self.final_config_dict
        gpu_id = config["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
        config["gpu_id"] = gpu_id
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
        use_cuda = bool(gpu_id) and torch.cuda.is_available()  # as RecBole decides for one process
        backend = config.get("dist_backend") or ("nccl" if use_cuda else "gloo")
        if backend not in DIST_BACKENDS:
            raise ValueError(f"dist_backend must be one of {DIST_BACKENDS}, got {backend!r}")
        if backend == "nccl" and not use_cuda:
            raise ValueError("dist_backend=nccl needs CUDA GPUs (gpu_id set and torch.cuda.is_available()); use gloo on CPUs")
        if use_cuda and len(gpu_id.split(",")) < config["nproc"]:
            raise ValueError(f"nproc={config['nproc']} processes need as many GPUs in gpu_id, got {gpu_id!r}")
        local_rank = config["local_rank"]
        torch.distributed.init_process_group(
            backend=backend,
            rank=local_rank + config["offset"],
            world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
        config["dist_backend"] = backend
        config["single_spec"] = False
        if use_cuda:
            config["device"] = torch.device("cuda", local_rank)
            torch.cuda.set_device(local_rank)
        else:
            config["device"] = torch.device("cpu")
        if local_rank != 0:
            config["state"] = "error"
            config["show_progress"] = False
            config["verbose"] = False

    def _check_no_secret(self):
        # The config is logged, written to TensorBoard and pickled into checkpoints: it names the
        # environment variable that holds an API key and never holds the key. Errors do not echo values.
        if "llm_api_key" in self.final_config_dict:
            raise ValueError(
                "llm_api_key is not a config key: the config is logged and saved with checkpoints. Put the key in an "
                "environment variable and set llm_api_key_env to that variable's NAME (default OPENAI_API_KEY)."
            )
        name = self.final_config_dict.get("llm_api_key_env")
        if name is not None and not (isinstance(name, str) and ENV_NAME.fullmatch(name)):
            raise ValueError(
                "llm_api_key_env must be the NAME of an environment variable (letters, digits, _), not the key "
                "itself: the config is logged and saved with checkpoints."
            )
