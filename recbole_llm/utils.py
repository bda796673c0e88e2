r"""Models by name, the plugin's before RecBole's (as RecBole-GNN's ``get_model``)."""

from recbole_llm.model.lookup import find_model
from recbole_llm.model.rlm import RLM_SUFFIX, aligned_model


def get_model(model_name):
    r"""Return the model class called ``model_name``.

    ``<Base>_RLM`` is ``<Base>`` with RLMRec alignment (see :func:`recbole_llm.rlm`); other names are
    searched among the plugin's own models, then RecBole's.
    """
    if model_name.endswith(RLM_SUFFIX):
        return aligned_model(model_name)
    return find_model(model_name)
