"""RecBole ``Config`` that knows plugin models and layers the plugin's YAML properties."""

import os

import recbole
from recbole.config import Config as RecBoleConfig

from recbole_llm.utils import get_model

PLUGIN_PROPERTIES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")
RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.abspath(recbole.__file__)), "properties")


class Config(RecBoleConfig):
    r"""RecBole's Config for plugin models.

    Internal properties are layered, later files winning:
    RecBole ``overall.yaml`` < plugin ``overall.yaml`` < the model YAML of every class in the model's
    inheritance chain, base first (so ``LightGCN_RLM`` inherits ``LightGCN.yaml``), from RecBole's and
    then the plugin's ``properties/model/`` < RecBole's and then the plugin's ``properties/dataset/<dataset>.yaml``.
    External config files, dicts and the command line override all of them, as in RecBole.
    """

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
                if os.path.isfile(path):
                    files.append(path)
        return files
