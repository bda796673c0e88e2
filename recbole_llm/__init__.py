r"""recbole-llm: RLMRec (Ren et al., WWW 2024) alignment for RecBole recommenders.

The public names below are imported on first use, so that importing one layer (a model, the
profile store) does not import the others (an LLM client, an embedding model).
"""

import importlib

from recbole_llm import compat

compat.apply()

__version__ = "0.1.0"
_PUBLIC = {
    "Config": "recbole_llm.config",
    "EmbeddingAdapter": "recbole_llm.model.adapters",
    "register_adapter": "recbole_llm.model.adapters",
    "rlm": "recbole_llm.model.rlm",
    "get_model": "recbole_llm.utils",
    "get_trainer": "recbole_llm.trainer",
    "load_data_and_model": "recbole_llm.quick_start",
    "objective_function": "recbole_llm.quick_start",
    "run": "recbole_llm.quick_start",
    "run_recbole_llm": "recbole_llm.quick_start",
    "run_hyper": "recbole_llm.tuning",
    "run_ray_tune": "recbole_llm.tuning",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_PUBLIC])
