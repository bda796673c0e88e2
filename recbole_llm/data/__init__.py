r"""Data on the model's side: the read-only profile loader (:mod:`recbole_llm.data.loader`); the
early checks of RecBole's atomic files (:mod:`recbole_llm.data.atomic`); RecBole's data preparation
with warm-only training negatives (:mod:`recbole_llm.data.preparation`); and two entry points: the
RLMRec dataset importer (:mod:`recbole_llm.data.import_rlmrec`) and the cold-start split command
(:mod:`recbole_llm.data.cold_split`)."""
