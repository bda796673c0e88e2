r"""recbole-llm: RLMRec (Ren et al., WWW 2024) alignment for RecBole recommenders."""

from recbole_llm import compat

compat.apply()

from recbole_llm.config import Config  # noqa: E402
from recbole_llm.model.rlm import rlm, register_adapter, EmbeddingAdapter  # noqa: E402
from recbole_llm.quick_start import load_data_and_model, objective_function, run, run_recbole_llm  # noqa: E402
from recbole_llm.tuning import run_hyper, run_ray_tune  # noqa: E402
from recbole_llm.utils import get_model  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "Config",
    "EmbeddingAdapter",
    "get_model",
    "load_data_and_model",
    "objective_function",
    "register_adapter",
    "rlm",
    "run",
    "run_hyper",
    "run_ray_tune",
    "run_recbole_llm",
]
