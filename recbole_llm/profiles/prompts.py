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

The model answers JSON ``{"summarization": ..., "reasoning": ...}``; :func:`parse_answer` accepts
what real models make of it (code fences, chatter around it, extra keys, the summary under another
key, a bare JSON string) and refuses what is not a profile (prose, "None", a copy of the input).
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


# Where real models put the summary when they do not use the key asked for (first match wins), and
# the reasoning. Matched case-insensitively; one level of nesting ({"profile": {"summary": ...}}) too.
SUMMARY_KEYS = ("summarization", "summarisation", "summary", "profile", "description", "answer", "response", "text")
REASONING_KEYS = ("reasoning", "reason", "rationale", "explanation")
MIN_SUMMARY_WORDS = 3  # "Comedy fans." is not a profile; "Fans of quiet dramas." is


def parse_answer(text, inputs=()):
    r"""Return (summarization, reasoning) from a model's answer, or raise ``ValueError`` saying why.

    Accepts what real models send around the JSON asked for: code fences, text before or after it,
    extra keys, differently cased keys, the summary under another key (:data:`SUMMARY_KEYS`, also
    one level down), and an answer that is a single JSON string. Refuses everything else: prose
    without JSON, an empty or "None" summary, one of fewer than :data:`MIN_SUMMARY_WORDS` words, and
    one made only of words of the input's facts (``inputs``, see :func:`input_strings`; e.g. the
    title and year a small model copies back under ``description``).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty answer")
    echoes = {word for v in inputs if isinstance(v, str) for word in _words(v)}
    decoder = json.JSONDecoder()
    problem = None
    for candidate in [*FENCE.findall(text), text]:
        for start in (m.start() for m in re.finditer(r'[{"]', candidate)):
            try:
                answer, end = decoder.raw_decode(candidate, start)
            except ValueError:
                continue
            if candidate[start] == '"' and (candidate[:start].strip() or candidate[end:].strip()):
                continue  # a quoted string counts as the answer only when it is the whole answer
            summary, reasoning = _summary_and_reasoning(answer)
            if summary is None:
                continue
            problem = _refusal(summary, echoes)
            if problem:
                continue
            return summary.strip(), reasoning.strip() if isinstance(reasoning, str) and reasoning.strip() else None
    if problem:
        raise ValueError(problem)
    raise ValueError(f"no JSON object with a summary string ({', '.join(SUMMARY_KEYS[:3])}, ...) in the answer: {text!r}")  # cut by the caller, after masking


def _summary_and_reasoning(answer):
    r"""(summary, reasoning) of a decoded JSON value, or (None, None) when it holds no summary."""
    if isinstance(answer, str):
        return answer, None
    if not isinstance(answer, dict):
        return None, None
    keys = {k.lower().strip(): k for k in answer if isinstance(k, str)}
    reasoning = next((answer[keys[k]] for k in REASONING_KEYS if k in keys), None)
    for key in SUMMARY_KEYS:
        if key in keys and isinstance(answer[keys[key]], str):
            return answer[keys[key]], reasoning
    for key in SUMMARY_KEYS:
        if key in keys and isinstance(answer[keys[key]], dict):
            summary, inner_reasoning = _summary_and_reasoning(answer[keys[key]])
            if summary is not None:
                return summary, inner_reasoning if inner_reasoning is not None else reasoning
    return None, None


def _refusal(summary, echoes):
    r"""Why ``summary`` is not a profile, or ``None`` when it is one."""
    if summary.strip().lower() in UNUSABLE:
        return f"the model could not summarise ({summary!r})"
    if echoes and set(_words(summary)) <= echoes:
        return f"the answer only repeats the input ({summary.strip()[:80]!r})"
    words = len(summary.split())
    if words < MIN_SUMMARY_WORDS:
        return f"the summary is too short to be a profile ({words} word(s): {summary.strip()[:80]!r})"
    return None


def _words(text):
    return re.findall(r"\w+", text.lower())


FREE_TEXT_KEYS = ("description", "review", "reviews")  # prose in the data: its words may fill a real profile


def input_strings(messages):
    r"""The short facts of the prompt's data message (titles, years, categories, features; not the
    descriptions and reviews): an answer made only of their words repeats the input."""
    strings = []

    def walk(value):
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for key, v in value.items():
                if key not in FREE_TEXT_KEYS:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for message in messages:
        if message.get("role") == "user":
            try:
                walk(json.loads(message["content"]))
            except (TypeError, ValueError):
                pass
    return strings
