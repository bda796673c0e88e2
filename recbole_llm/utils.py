"""Model lookup that knows the plugin's models before falling back to RecBole's."""

import importlib

from recbole.utils import get_model as recbole_get_model

RLM_SUFFIX = "_RLM"
PLUGIN_MODEL_PACKAGES = ["recbole_llm.model.general_recommender"]


def get_model(model_name):
    r"""Return the model class called ``model_name``.

    ``<Base>_RLM`` is ``<Base>`` with RLMRec alignment (see :func:`recbole_llm.rlm`); other names are
    searched among the plugin's own models (one module per model, named in lower case), then RecBole's.
    """
    if model_name.endswith(RLM_SUFFIX):
        from recbole_llm.model.rlm import rlm

        return rlm(get_model(model_name[: -len(RLM_SUFFIX)]))
    for package in PLUGIN_MODEL_PACKAGES:
        module_path = f"{package}.{model_name.lower()}"
        if importlib.util.find_spec(module_path) is not None:
            return getattr(importlib.import_module(module_path), model_name)
    try:
        return recbole_get_model(model_name)
    except ModuleNotFoundError as e:
        # RecBole's search ends in its exlib package, which imports optional libraries (lightgbm).
        raise ValueError(f"`model_name` [{model_name}] is not a recbole-llm or RecBole model ({e})") from None
