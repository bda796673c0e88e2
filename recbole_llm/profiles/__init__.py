r"""Profiles: records from the dataset, writers (template or LLM), embedders and the store."""

from recbole_llm.profiles.builder import ProfileBuilder, build_profiles, profile_dir
from recbole_llm.profiles.store import ProfileStore, ProfileStoreError

__all__ = ["ProfileBuilder", "ProfileStore", "ProfileStoreError", "build_profiles", "profile_dir"]
