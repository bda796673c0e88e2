r"""The model layer's config keys and their checks (type, range, allowed values).

Checked once, when the :class:`~recbole_llm.config.Config` is built, before any data is loaded; a
model reads them from the config in its ``__init__`` as RecBole's models do.
"""

from recbole_llm.checks import boolean, choice, integer, keyword_or, number, optional

ALIGNMENTS = ("con", "gen", "none")
BIAS_INITS = ("zeros", "pytorch")
MASK_VIEWS = ("first", "all")
USER_NEGATIVES = ("all", "batch")
MISSING_POLICIES = ("error", "zero", "mean")
ALIGNED_USERS = ("all", "profiled", "none")
COLD_START = ("none", "knn", "projector")
COLD_START_NORMS = ("none", "warm_mean")
LAYER_COMBINATIONS = ("mean", "sum")
REG_SCOPES = ("batch", "all")
VIEW_SAMPLINGS = ("epoch", "step")
LOSS_REDUCTIONS = ("sum", "mean")

MODEL_KEYS = {
    "align": choice(*ALIGNMENTS),
    "align_weight": optional(number(minimum=0)),
    "align_temperature": optional(number(minimum=0, open_minimum=True)),
    "mask_ratio": number(minimum=0, maximum=1, open_minimum=True, open_maximum=True),
    "mask_sample_size": optional(integer(minimum=2)),
    "mask_views": choice(*MASK_VIEWS),
    "align_user_negatives": choice(*USER_NEGATIVES),
    "align_sample_size": optional(integer(minimum=2)),
    "profile_reduce_dim": optional(keyword_or("auto", integer(minimum=1))),
    "profile_missing": choice(*MISSING_POLICIES),
    "align_users": choice(*ALIGNED_USERS),
    "align_bias_init": choice(*BIAS_INITS),
    "cold_start": choice(*COLD_START),
    "cold_start_k": integer(minimum=1),
    "cold_start_norm": choice(*COLD_START_NORMS),
    "cold_start_ridge": number(minimum=0, open_minimum=True),
    # The plugin's LightGCN and SGL (properties/model/LightGCN.yaml, SGL.yaml): RecBole's training by
    # default, RLMRec's on request.
    "layer_combination": choice(*LAYER_COMBINATIONS),
    "edge_dropout": number(minimum=0, maximum=1, open_maximum=True),
    "reg_scope": choice(*REG_SCOPES),
    "view_sampling": choice(*VIEW_SAMPLINGS),
    "loss_reduction": choice(*LOSS_REDUCTIONS),
    "ssl_neg_items": boolean(),
}
