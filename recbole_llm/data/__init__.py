r"""Data on the model's side: the read-only profile loader (:mod:`recbole_llm.data.loader`); and the
RLMRec dataset importer (:mod:`recbole_llm.data.import_rlmrec`, an entry point); the cold-start split
command (:mod:`recbole_llm.data.cold_split`, an entry point); RecBole's data preparation with
warm-only training negatives (:mod:`recbole_llm.data.preparation`)."""
