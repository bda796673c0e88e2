r"""The data layer's config keys and their checks (checked when the Config is built)."""

from recbole_llm.checks import boolean

DATA_KEYS = {
    "neg_sample_cold_items": boolean(),
}
