r"""The typed settings of everything in :mod:`recbole_llm.profiles`: data files, prompts, LLM, embedder.

The profiles layer reads its settings from a :class:`ProfileSettings`, never from RecBole's
``Config``: any mapping with these keys (a Config, a dict) gives one through
:meth:`ProfileSettings.from_mapping`, which checks every value at once. The defaults are the
plugin's ``properties/overall.yaml`` (a test keeps the two equal); the RecBole keys (``dataset``,
``data_path``, separators, ``RATING_FIELD`` ...) mean what they mean in RecBole.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional

from recbole_llm.checks import boolean, check, choice, existing_file, integer, number, optional, text, text_list
from recbole_llm.profiles.store import store_dir

LLM_BACKENDS = ("template", "openai", "openai-batch", "hf")
RESPONSE_FORMATS = ("json_schema", "json_object", "none")
UNPARSED_CHOICES = ("fail", "keep_raw")
PROMPT_PRESETS = ("movies", "books", "businesses", "games", "generic")


def _setting(default, rule):
    return field(default=default, metadata={"rule": rule})


@dataclass(frozen=True)
class ProfileSettings:
    r"""Settings of one profile store's build; each field is the config key of the same name."""

    # The dataset, as RecBole names and reads it.
    dataset: str = _setting(None, text())
    data_path: str = _setting(None, text())
    field_separator: str = _setting("\t", text())
    seq_separator: str = _setting(" ", text())
    encoding: str = _setting("utf-8", text())
    benchmark_filename: Optional[List[str]] = _setting(None, optional(text_list()))
    RATING_FIELD: Optional[str] = _setting("rating", optional(text()))
    TIME_FIELD: Optional[str] = _setting("timestamp", optional(text()))
    show_progress: bool = _setting(True, boolean())
    # What a profile is written from.
    profile_dir: Optional[str] = _setting(None, optional(text()))
    profile_title_field: Optional[str] = _setting(None, optional(text()))
    profile_category_fields: Optional[List[str]] = _setting(None, optional(text_list()))
    profile_user_fields: Optional[List[str]] = _setting(None, optional(text_list()))
    profile_max_items: int = _setting(20, integer(minimum=1))
    profile_review_field: Optional[str] = _setting(None, optional(text()))
    profile_max_reviews: int = _setting(5, integer(minimum=0))
    # Who writes it.
    llm_backend: str = _setting("template", choice(*LLM_BACKENDS))
    llm_model: Optional[str] = _setting(None, optional(text()))
    llm_base_url: Optional[str] = _setting(None, optional(text()))
    llm_api_key_env: str = _setting("OPENAI_API_KEY", text())
    llm_concurrency: int = _setting(8, integer(minimum=1))
    llm_max_retries: int = _setting(5, integer(minimum=0))
    llm_timeout: float = _setting(60.0, number(minimum=0, open_minimum=True))
    llm_max_connection_failures: int = _setting(5, integer(minimum=0))
    llm_backoff_base: float = _setting(1.0, number(minimum=0))
    llm_parse_retries: int = _setting(2, integer(minimum=0))
    llm_max_tokens: Optional[int] = _setting(600, optional(integer(minimum=1)))
    llm_temperature: Optional[float] = _setting(0.0, optional(number(minimum=0)))
    llm_batch_size: int = _setting(8, integer(minimum=1))
    llm_prompt_preset: Optional[str] = _setting(None, optional(choice(*PROMPT_PRESETS)))
    llm_prompt_item_file: Optional[str] = _setting(None, optional(existing_file()))
    llm_prompt_user_file: Optional[str] = _setting(None, optional(existing_file()))
    llm_prompt_token_budget: int = _setting(2000, integer(minimum=1))
    llm_response_format: str = _setting("json_schema", choice(*RESPONSE_FORMATS))
    llm_unparsed: str = _setting("fail", choice(*UNPARSED_CHOICES))
    llm_answer_prefix: Optional[str] = _setting(None, optional(text()))
    llm_batch_poll_seconds: float = _setting(60.0, number(minimum=0, open_minimum=True))
    llm_price_input: Optional[float] = _setting(None, optional(number(minimum=0)))
    llm_price_output: Optional[float] = _setting(None, optional(number(minimum=0)))
    # Who embeds it.
    embedder: Optional[str] = _setting(None, optional(text()))
    embed_batch_size: int = _setting(64, integer(minimum=1))

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check(f.name, getattr(self, f.name), f.metadata["rule"]))

    @classmethod
    def keys(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, mapping, **overrides):
        r"""The settings named in ``mapping`` (a RecBole Config or a dict; absent keys keep their
        defaults), then ``overrides``; every value checked."""
        values = {key: mapping[key] for key in cls.keys() if key in mapping}
        return cls(**{**values, **overrides})

    @property
    def store_dir(self):
        r"""The store's directory: ``profile_dir``, or ``profiles/<dataset>``."""
        return store_dir(self.profile_dir, self.dataset)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

