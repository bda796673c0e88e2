r"""Profiles: records from the dataset, writers (template or LLM), embedders and the store.

This layer takes typed settings (:class:`~recbole_llm.profiles.settings.ProfileSettings`) and a
training split; it knows nothing of models or of RecBole's ``Config``. Import its modules directly
(``recbole_llm.profiles.store``, ``.builder`` ...): this package imports none of them, so that
reading a store never loads an LLM client or an embedding model.
"""
