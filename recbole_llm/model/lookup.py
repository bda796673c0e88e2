r"""Model classes by name: the plugin's own models first (one module per model, named in lower case,
under :data:`PLUGIN_MODEL_PACKAGES`), then RecBole's. ``<Base>_RLM`` names are resolved by
:func:`recbole_llm.utils.get_model`."""

import importlib

from recbole.utils import get_model as recbole_get_model

PLUGIN_MODEL_PACKAGES = ["recbole_llm.model.general_recommender"]


def find_model(model_name):
    r"""The plugin's or RecBole's model class called ``model_name``."""
    for package in PLUGIN_MODEL_PACKAGES:
        module_path = f"{package}.{model_name.lower()}"
        if importlib.util.find_spec(module_path) is not None:
            return getattr(importlib.import_module(module_path), model_name)
    try:
        return recbole_get_model(model_name)
    except ModuleNotFoundError as e:
        # RecBole's search ends in its exlib package, which imports optional libraries (lightgbm).
        raise ValueError(f"`model_name` [{model_name}] is not a recbole-llm or RecBole model ({e})") from None
