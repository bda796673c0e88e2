r"""The evaluation layer's config keys and their checks (checked when the Config is built)."""

from recbole_llm.checks import increasing_integers, number

EVALUATION_KEYS = {
    "group_history_buckets": increasing_integers(minimum=1),
    "group_head_share": number(minimum=0, maximum=1, open_minimum=True, open_maximum=True),
}
