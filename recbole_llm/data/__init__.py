r"""Data on the model's side: the read-only profile loader (:mod:`recbole_llm.data.loader`); the
early checks of RecBole's atomic files (:mod:`recbole_llm.data.atomic`); and the RLMRec dataset
importer (:mod:`recbole_llm.data.import_rlmrec`, an entry point)."""
