r"""RecBole ``Config`` that knows plugin models, layers the plugin's YAML properties, checks every
plugin key before any data is loaded, runs several processes on CPUs as well as GPUs, and refuses
configs that would log a secret."""

import os
import re
import sys

import recbole
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_llm.checks import SettingError, check, check_all, choice, optional
from recbole_llm.data.settings import DATA_KEYS
from recbole_llm.evaluation import metrics as _group_metrics  # noqa: F401  (registers them with RecBole's evaluator)
from recbole_llm.evaluation.settings import EVALUATION_KEYS
from recbole_llm.model.settings import MODEL_KEYS
from recbole_llm.profiles.settings import ProfileSettings
from recbole_llm.properties import PROPERTIES_DIR as PLUGIN_PROPERTIES
from recbole_llm.utils import get_model

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
        # RecBole's parser reads sys.argv itself (and warns about every argument it cannot use).
        argv = sys.argv
        if self._command_line is not True:
            sys.argv = [argv[0], *(self._command_line or [])]
        try:
            return super()._load_cmd_line()
        except SyntaxError:  # RecBole's "duplicate commend arg" names the argument, not the problem
            raise SettingError(f"{_repeated(sys.argv[1:])} is given twice with different values on the command line; give it once") from None
        finally:
            sys.argv = argv

    def _load_config_files(self, file_list):
        config = {}
        for path in file_list or []:
            if not os.path.isfile(path):
                raise SettingError(f"config file {path} does not exist (config_files / config_file_list)")
            with open(path, encoding="utf-8") as f:
                try:
                    content = yaml.load(f.read(), Loader=self.yaml_loader)
                except yaml.YAMLError as e:
                    raise SettingError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
            if content is not None and not isinstance(content, dict):
                raise SettingError(f"{path}: a config file holds `key: value` lines, this one holds a {type(content).__name__}")
            config.update(content or {})
        return config

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
        self._no_negative_sampling_for_sequential_ce()
        super()._set_default_parameters()
        self._check_no_secret()
        self._check_plugin_keys()

    def _no_negative_sampling_for_sequential_ce(self):
        r"""A sequential model trained with CE scores all items and samples no negatives, but
        RecBole's ``overall.yaml`` samples one per row and its Config then refuses the model
        (``train_neg_sample_args ... should be None when the loss_type is CE``). Unless the user
        set ``train_neg_sample_args``, such a model here gets none (``loss_type: BPR`` keeps
        RecBole's default sampling); RecBole's own Config is unchanged."""
        config = self.final_config_dict
        if (
            config.get("MODEL_TYPE") == ModelType.SEQUENTIAL
            and not hasattr(self.model_class, "input_type")
            and config.get("loss_type") == "CE"
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            config["train_neg_sample_args"] = None

    def _check_plugin_keys(self):
        r"""Every plugin key, checked (and converted: ``"3"`` -> 3) once, before any data is loaded."""
        config = self.final_config_dict
        config.update(check_all(config, MODEL_KEYS))
        config.update(check_all(config, EVALUATION_KEYS))
        config.update(check_all(config, DATA_KEYS))
        if config.get("cold_start", "none") != "none" and config.get("MODEL_TYPE") == ModelType.SEQUENTIAL:
            raise SettingError(
                f"cold_start={config['cold_start']}: {self.model} is sequential; cold-start scoring replaces rows of user and "
                "item embeddings scored by dot product (general recommenders). Set cold_start: none."
            )
        if config.get("cold_start", "none") != "none" and not hasattr(self.model_class, "init_cold_start"):
            raise SettingError(
                f"cold_start={config['cold_start']}: {self.model} has no cold-start scoring; run its plugin form, "
                f"--model={self.model}_RLM --align=none (the base model unchanged, plus cold-start scoring)"
            )
        config["dist_backend"] = check("dist_backend", config.get("dist_backend"), optional(choice(*DIST_BACKENDS)))
        settings = ProfileSettings.from_mapping(config)
        config.update({key: getattr(settings, key) for key in ProfileSettings.keys() if key in config})

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
        config = self.final_config_dict
        if "llm_api_key" in config:
            raise ValueError(
                "llm_api_key is not a config key: the config is logged and saved with checkpoints. Put the key in an "
                "environment variable and set llm_api_key_env to that variable's NAME (default OPENAI_API_KEY)."
            )
        name = config.get("llm_api_key_env")
        if name is not None and not (isinstance(name, str) and ENV_NAME.fullmatch(name)):
            raise ValueError(
                "llm_api_key_env must be the NAME of an environment variable (letters, digits, _), not the key "
                "itself: the config is logged and saved with checkpoints."
            )
        secret = os.environ.get(name or "")
        holders = sorted(key for key, value in config.items() if secret and _holds(value, secret))
        if holders:
            raise ValueError(
                f"config key(s) {holders} hold the API key of the environment variable {name!r}: the config is logged "
                "and saved with checkpoints. Remove the key from the config; it is read from the environment."
            )


MIN_SECRET_LENGTH = 8  # a shorter "key" would match ordinary values (a local server's "none", "x")


def _holds(value, secret):
    if len(secret) < MIN_SECRET_LENGTH:
        return False
    if isinstance(value, str):
        return secret in value
    if isinstance(value, dict):
        return any(_holds(v, secret) for v in value.values())
    if isinstance(value, (list, tuple, set)):
        return any(_holds(v, secret) for v in value)
    return False


def _repeated(arguments):
    seen = {}
    for argument in arguments:
        name, _, value = argument.partition("=")
        if seen.setdefault(name, value) != value:
            return name
    return "?"
