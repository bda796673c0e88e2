r"""RLMRec-shaped prompts for the LLM profile writers, and the parser of their answers.

A prompt is two chat messages (Ren et al., WWW 2024, § profile generation):

- ``system``: the instructions, read verbatim from a plain text file: a preset under
  ``properties/prompts/<preset>/{item,user}.txt`` (movies, books, businesses, games, generic),
  picked from the dataset name or by ``llm_prompt_preset``, or a user's own file
  (``llm_prompt_item_file`` / ``llm_prompt_user_file``);
- ``user``: the facts as ONE JSON document, nothing else. Item text (titles, descriptions, reviews)
  only ever appears as JSON string values in this message, never in the instructions, so an item
  whose description says "ignore previous instructions" is data the instructions tell the model
  to summarise, and it cannot break out of its string.

Item data: the item's metadata and up to ``profile_max_reviews`` training reviews. User data: the
user's features and training items (title, the item's generated profile as ``description``, the
user's review), best-rated then most recent first, as many as fit in ``llm_prompt_token_budget``.

The model answers JSON ``{"summarization": ..., "reasoning": ...}``; :func:`parse_answer` accepts it
inside code fences or followed by other text.
"""

import json
import math
import os
import re

from recbole_llm.properties import PROPERTIES_DIR

PROMPTS_DIR = os.path.join(PROPERTIES_DIR, "prompts")
# Dataset name fragments that pick a preset when llm_prompt_preset is not set; first match wins.
PRESET_HINTS = (
    ("movies", ("ml-", "movie", "netflix", "lens")),
    ("books", ("book", "goodreads")),
    ("businesses", ("yelp", "business", "restaurant", "poi")),
    ("games", ("steam", "game")),
)
CHARS_PER_TOKEN = 4  # the usual estimate for English text with BPE tokenizers
MAX_REVIEW_CHARS = 600  # about 100 words: a review illustrates, the budget goes to more items
UNUSABLE = {"", "none", "null", "n/a"}  # what RLMRec's prompt asks a model to answer when it cannot summarise
FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)


def estimate_tokens(text):
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def preset_for(dataset):
    name = dataset.lower()
    return next((preset for preset, hints in PRESET_HINTS if any(h in name for h in hints)), "generic")


class PromptTemplates:
    r"""The instruction texts of one run, read and validated once."""

    def __init__(self, settings):
        preset = settings.llm_prompt_preset or preset_for(settings.dataset)
        self.preset = preset
        self.budget = settings.llm_prompt_token_budget
        self.files = {
            "item": settings.llm_prompt_item_file or os.path.join(PROMPTS_DIR, preset, "item.txt"),
            "user": settings.llm_prompt_user_file or os.path.join(PROMPTS_DIR, preset, "user.txt"),
        }
        self.system = {}
        for kind, path in self.files.items():
            if not os.path.isfile(path):
                raise ValueError(f"prompt template for {kind} profiles not found: {path} (llm_prompt_{kind}_file)")
            with open(path, encoding="utf-8") as f:
                self.system[kind] = f.read().strip()
            if not self.system[kind]:
                raise ValueError(f"prompt template {path} is empty")

    def messages(self, kind, record, item_profiles=None):
        data = item_data(record) if kind == "item" else user_data(record, item_profiles or {}, self.budget)
        return [
            {"role": "system", "content": self.system[kind]},
            {"role": "user", "content": json.dumps(data, ensure_ascii=False)},
        ]


def item_data(record):
    r"""What the model learns about an item: its metadata and a few training reviews."""
    data = {k: v for k, v in record.items() if k not in ("id", "reviews")}
    if record.get("reviews"):
        data["reviews"] = [_clip(r) for r in record["reviews"]]
    return data


def user_data(record, item_profiles, budget):
    r"""What the model learns about a user: features and training items, up to ``budget`` tokens.

    Items come in the record's order (best-rated, then most recent); the first one is always kept.
    """
    data = {}
    if record.get("features"):
        data["features"] = record["features"]
    data["interactions"] = []
    used = estimate_tokens(json.dumps(data, ensure_ascii=False))
    for item in record.get("items", []):
        entry = {"title": _title(item)}
        if item_profiles.get(item["id"]):
            entry["description"] = item_profiles[item["id"]]
        if item.get("review"):
            entry["review"] = _clip(item["review"])
        cost = estimate_tokens(json.dumps(entry, ensure_ascii=False)) + 1
        if data["interactions"] and used + cost > budget:
            break
        data["interactions"].append(entry)
        used += cost
    return data


def _title(item):
    title = item.get("title") or f"item {item['id']}"
    return f"{title} ({item['year']})" if item.get("year") else title


def _clip(text):
    return text if len(text) <= MAX_REVIEW_CHARS else text[:MAX_REVIEW_CHARS].rsplit(" ", 1)[0] + " ..."


def encode_prompt(messages):
    r"""The prompt as one string: what is hashed into ``prompt_sha`` and sent."""
    return json.dumps({"messages": messages}, ensure_ascii=False)


def decode_prompt(prompt):
    return json.loads(prompt)["messages"]


def parse_answer(text):
    r"""Return (summarization, reasoning) from a model's answer, or raise ``ValueError``.

    Tolerates code fences and any text before or after the JSON object; takes the first object
    with a ``summarization`` string.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty answer")
    decoder = json.JSONDecoder()
    for candidate in [*FENCE.findall(text), text]:
        for start in (m.start() for m in re.finditer(r"\{", candidate)):
            try:
                answer, _ = decoder.raw_decode(candidate, start)
            except ValueError:
                continue
            if isinstance(answer, dict) and isinstance(answer.get("summarization"), str):
                summary = answer["summarization"].strip()
                if summary.lower() in UNUSABLE:
                    raise ValueError(f"the model could not summarise ({answer['summarization']!r})")
                reasoning = answer.get("reasoning")
                return summary, reasoning.strip() if isinstance(reasoning, str) else None
    raise ValueError(f"no JSON object with a 'summarization' string in the answer: {text!r}")  # cut by the caller, after masking
