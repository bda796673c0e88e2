r"""Profile writers. A backend turns a record (see :mod:`recbole_llm.profiles.records`) into a
prompt, and prompts into profiles.

Interface, shared by every backend:

- ``identity``: what wrote the profile, stored as each record's ``source`` (``"template"``,
  ``"openai:<model>"``, ``"hf:<path>"``);
- ``prompt(kind, record, item_profiles)``: the exact input for one profile; its sha256 is the
  record's ``prompt_sha``, so a changed template or changed facts make the profile stale;
- ``generate(kind, prompts)``: yields ``(index, ProfileResult)`` as results finish, in any order;
  a result with ``error`` set is a failed profile (recorded, retried by the next build); one with
  ``unparsed`` set is an answer kept as it is (``llm_unparsed: keep_raw``), marked so in its record;
- optionally ``stats.snapshot()``: ``{"retried": int, "tokens": {"prompt", "completion"} or None}``.

``template`` is here; ``openai`` and ``hf`` are in :mod:`recbole_llm.profiles.llm`;
:func:`recbole_llm.profiles.builder.make_backend` picks one by ``llm_backend``.
"""

import json
from dataclasses import dataclass
from typing import Optional

TEMPLATE_VERSION = 1


@dataclass
class ProfileResult:
    profile: Optional[str]
    reasoning: Optional[str] = None
    error: Optional[str] = None
    unparsed: Optional[str] = None  # set when ``profile`` is an answer kept raw (llm_unparsed: keep_raw): why it did not parse


class TemplateBackend:
    r"""Profiles written from the facts alone, without an LLM: deterministic, offline, instant."""

    identity = "template"

    def prompt(self, kind, record, item_profiles=None):
        # The "prompt" is the record itself: any change of the facts or the template changes it.
        return json.dumps({"template": TEMPLATE_VERSION, "kind": kind, "record": record}, sort_keys=True, ensure_ascii=False)

    def generate(self, kind, prompts):
        render = render_item if kind == "item" else render_user
        for index, prompt in enumerate(prompts):
            yield index, ProfileResult(profile=render(json.loads(prompt)["record"]))


def _item_name(item):
    name = item.get("title") or f"Item {item['id']}"
    return f"{name} ({item['year']})" if item.get("year") else name


def render_item(record):
    r"""``Toy Story (1995). Categories: Animation, Children's, Comedy.`` plus any other attributes."""
    parts = [_item_name(record) + "."]
    if record.get("categories"):
        parts.append("Categories: " + ", ".join(record["categories"]) + ".")
    for field, value in record.get("attributes", {}).items():
        parts.append(f"{field.replace('_', ' ').capitalize()}: {value}.")
    return " ".join(parts)


GENDERS = {"m": "male", "f": "female"}


def _describe_user(features):
    features = dict(features)
    words = []
    if "age" in features:
        words.append(f"{features.pop('age')}-year-old")
    if "gender" in features:
        gender = features.pop("gender")
        words.append(GENDERS.get(gender.lower(), gender))
    words.append(features.pop("occupation", "user").replace("_", " "))
    sentence = f"A {' '.join(words)}."
    extras = [f"{k.replace('_', ' ').capitalize()}: {v}." for k, v in features.items()]
    return " ".join([sentence, *extras])


def render_user(record):
    r"""``A 24-year-old male technician. Enjoys: Star Wars (1977), ... Favourite categories: ...``"""
    parts = [_describe_user(record.get("features", {}))]
    if record.get("items"):
        parts.append("Enjoys: " + ", ".join(_item_name(i) for i in record["items"]) + ".")
    if record.get("categories"):
        parts.append("Favourite categories: " + ", ".join(record["categories"]) + ".")
    return " ".join(parts)
