r"""Answers that parse: the tolerant parser on real models' answers, structured output with its
fallback against a server that refuses it, and ``llm_unparsed`` (fail, or keep the raw text)."""

import json
import logging
import sys

import pytest

from openai_server import OpenAIServer
from recbole_llm.profiles.llm import PROFILE_SCHEMA, RESPONSE_FORMATS, SCHEMA_IN_JSON_MODE
from recbole_llm.profiles.prompts import input_strings, parse_answer
from recbole_llm.profiles.store import ProfileStore
from test_llm_profiles import KEY, KEY_ENV, N_ITEMS, N_USERS, builder, llm_config

TOY_STORY = [
    {"role": "system", "content": "You will serve as an assistant ..."},
    {"role": "user", "content": json.dumps({"title": "Toy Story", "year": "1995", "categories": ["Animation", "Children's", "Comedy"],
                                            "reviews": ["A wonderful film for families and fans of animation."]})},
]
GOOD = "Families and fans of witty animated adventures."


@pytest.fixture(autouse=True)
def plain_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


def parse(text):
    return parse_answer(text, input_strings(TOY_STORY))


@pytest.mark.parametrize("answer, expected", [
    # What was asked for, and what real models make of it.
    (json.dumps({"summarization": GOOD, "reasoning": "Pixar's first feature."}), (GOOD, "Pixar's first feature.")),
    (f"Sure! Here is the JSON:\n```json\n{{\"summarization\": \"{GOOD}\", \"reasoning\": \"r\"}}\n```\nHope this helps!", (GOOD, "r")),
    (json.dumps({"summarization": GOOD, "reasoning": "r", "confidence": 0.9, "genres": ["Comedy"]}), (GOOD, "r")),  # extra keys
    (json.dumps(GOOD), (GOOD, None)),  # a single JSON string
    (f"```\n{json.dumps(GOOD)}\n```", (GOOD, None)),
    (json.dumps({"Summary": GOOD, "Explanation": "e"}), (GOOD, "e")),  # another key, other case
    (json.dumps({"description": GOOD, "genres": ["Animation"]}), (GOOD, None)),
    (json.dumps({"profile": {"summary": GOOD, "reason": "nested"}}), (GOOD, "nested")),  # one level down
    ("{\n  \"summarisation\": \"" + GOOD + "\",\n  \"reasoning\": \"\"\n}", (GOOD, None)),  # British spelling, empty reasoning
])
def test_the_parser_accepts_what_real_models_send(answer, expected):
    assert parse(answer) == expected


@pytest.mark.parametrize("answer, reason", [
    # SmolLM2-135M-Instruct's answer to the Toy Story prompt: valid JSON, a copy of the input.
    ('{"description": "Toy Story (1995)", "genres": ["Animation", "Children\'s", "Comedy"]}', "repeats the input"),
    ('"Toy Story (1995). Animation, Comedy."', "repeats the input"),
    ("Toy Story is a great movie for families who like animation.", "no JSON object"),  # prose
    ('The critics said "a film for the whole family" and loved it.', "no JSON object"),  # a quote inside prose
    ('{"genres": ["Animation"], "year": 1995}', "no JSON object"),  # no summary anywhere
    ('{"summarization": ["families", "kids"]}', "no JSON object"),  # not a string
    ('{"summarization": "None", "reasoning": "not enough data"}', "could not summarise"),
    ('{"summary": "Comedy fans"}', "too short"),
    ('{"summarization": "Families and fans of witty animated', "no JSON object"),  # cut by max_tokens
    ("[1, 2, 3]", "no JSON object"),
    ("", "empty answer"),
])
def test_the_parser_refuses_garbage_saying_why(answer, reason):
    with pytest.raises(ValueError, match=reason):
        parse(answer)


def test_input_strings_are_the_facts_not_the_prose():
    assert input_strings(TOY_STORY) == ["Toy Story", "1995", "Animation", "Children's", "Comedy"]
    # A real summary may reuse the reviews' words: only the facts make an echo.
    assert parse(json.dumps("A wonderful film for families and fans of animation."))[0].startswith("A wonderful")


# -- structured output against servers that honour, refuse or ignore it -------------------------


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def chat_bodies(server):
    return [json.loads(r["body"]) for r in server.requests if r["endpoint"] == "chat"]


def test_the_json_schema_is_asked_for_and_makes_a_prose_model_parse(key, tmp_path):
    with OpenAIServer(api_key=KEY, unconstrained="prose") as server:
        summary = builder(tmp_path, **llm_config(server)).build()
        bodies = chat_bodies(server)
    assert summary["failed"] == {"item": 0, "user": 0} and summary["retried"] == {"item": 0, "user": 0}
    assert len(bodies) == N_ITEMS + N_USERS
    assert all(b["response_format"]["type"] == "json_schema" and b["response_format"]["json_schema"]["schema"] == PROFILE_SCHEMA
               for b in bodies)
    # The same prose model without the schema: every answer fails.
    with OpenAIServer(api_key=KEY, unconstrained="prose") as server:
        summary = builder(tmp_path, **llm_config(server, llm_response_format="none", llm_parse_retries=0,
                                                 profile_dir=str(tmp_path / "plain"))).build(limit=4)
        assert all("response_format" not in b for b in chat_bodies(server))
    assert summary["failed"] == {"item": 4, "user": 4}


def test_a_server_that_refuses_the_schema_is_asked_without_it_once_and_for_all(key, tmp_path, caplog):
    with OpenAIServer(api_key=KEY, response_format="reject", unconstrained="loose", echo_key=True) as server:
        with caplog.at_level(logging.WARNING):
            summary = builder(tmp_path, **llm_config(server, llm_concurrency=1)).build()
        refused = [r for r in server.requests if r["endpoint"] == "chat" and b"response_format" in r["body"]]
        total = server.count("chat")
    assert summary["failed"] == {"item": 0, "user": 0} and summary["retried"] == {"item": 0, "user": 0}
    # The schema refused, then the schema in JSON mode, then never asked again.
    assert [json.loads(r["body"])["response_format"] for r in refused] == [RESPONSE_FORMATS["json_schema"], SCHEMA_IN_JSON_MODE]
    assert total == N_ITEMS + N_USERS + 2
    warnings = [r.getMessage() for r in caplog.records if "refused response_format" in r.getMessage()]
    assert len(warnings) == 1 and "HTTP 400" in warnings[0] and KEY not in caplog.text and "request key: ***" in warnings[0]
    assert "json_schema, json_object with the schema" in warnings[0] and "asking without it" in warnings[0]
    records = ProfileStore(tmp_path / "profiles").read_records("item")
    assert all(r["profile"].startswith("Viewers who enjoy ") and "unparsed" not in r for r in records.values())


def test_a_400_about_something_else_is_not_blamed_on_the_schema(key, tmp_path):
    # The first request fails with the schema, with the schema in JSON mode, and without either:
    # that profile fails, and the schema is still asked for.
    with OpenAIServer(api_key=KEY) as server:
        server.script("chat", "400", "400", "400")
        b = builder(tmp_path, **llm_config(server, llm_concurrency=1))
        summary = b.build(limit=3)
        bodies = chat_bodies(server)
    assert summary["failed"] == {"item": 1, "user": 0} and b.backend.response_format == RESPONSE_FORMATS["json_schema"]
    assert [body.get("response_format") for body in bodies[:4]] == [RESPONSE_FORMATS["json_schema"], SCHEMA_IN_JSON_MODE, None,
                                                                    RESPONSE_FORMATS["json_schema"]]
    assert len(bodies) == 8 and all(body.get("response_format") == RESPONSE_FORMATS["json_schema"] for body in bodies[3:])
    assert "maximum context length" in next(iter(ProfileStore(b.store.path).read_failures("item").values()))["error"]


def test_llama_cpp_python_refusing_the_schema_with_a_500_gets_it_in_json_mode(key, tmp_path, caplog):
    # llama-cpp-python's server (0.3.x) answers a json_schema request with HTTP 500 and takes the
    # schema inside JSON mode: not retried as a server error, but asked that way from then on.
    with OpenAIServer(api_key=KEY, response_format="llama-cpp-python", unconstrained="prose") as server:
        with caplog.at_level(logging.WARNING):
            summary = builder(tmp_path, **llm_config(server, llm_concurrency=1)).build()
        bodies = chat_bodies(server)
    assert summary["failed"] == {"item": 0, "user": 0} and summary["retried"] == {"item": 0, "user": 0}
    assert [b["response_format"] for b in bodies] == [RESPONSE_FORMATS["json_schema"]] + [SCHEMA_IN_JSON_MODE] * (N_ITEMS + N_USERS)
    warnings = [r.getMessage() for r in caplog.records if "refused response_format" in r.getMessage()]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0] and "asking with json_object with the schema" in warnings[0]


def test_a_server_error_that_does_not_name_response_format_is_retried_not_blamed_on_it(key, tmp_path):
    with OpenAIServer(api_key=KEY) as server:
        server.script("chat", "500")
        b = builder(tmp_path, **llm_config(server, llm_concurrency=1, llm_backoff_base=0.01))
        summary = b.build(limit=1)
        bodies = chat_bodies(server)
    assert summary["failed"] == {"item": 0, "user": 0} and summary["retried"]["item"] == 1
    assert all(body["response_format"] == RESPONSE_FORMATS["json_schema"] for body in bodies)


@pytest.mark.parametrize("choice", ["fail", "keep_raw"])
def test_llm_unparsed_records_a_failure_or_keeps_the_raw_text_marked(key, tmp_path, choice):
    with OpenAIServer(api_key=KEY, unconstrained="prose") as server:
        b = builder(tmp_path, **llm_config(server, llm_response_format="none", llm_parse_retries=1, llm_unparsed=choice))
        summary = b.build(limit=5)
        assert server.count("chat") == 2 * 10  # every answer asked twice
    store = ProfileStore(b.store.path)
    if choice == "fail":
        assert summary["failed"] == {"item": 5, "user": 5} and not store.read_records("item")
        assert all("unparseable answer after 2 tries: no JSON object" in f["error"] for f in store.read_failures("item").values())
    else:
        assert summary["failed"] == {"item": 0, "user": 0} and summary["generated"] == {"item": 5, "user": 5}
        records = store.read_records("item")
        assert len(records) == 5 and not store.read_failures("item")
        assert all(r["profile"] == "Sure! This item is great for everyone who likes good things." for r in records.values())
        assert all(r["unparsed"].startswith("unparseable answer after 2 tries: no JSON object") for r in records.values())


def test_a_gguf_llm_model_must_be_a_file_and_a_directory_stays_as_it_is(tmp_path):
    from recbole_llm.profiles.llm import pretrained_source

    assert pretrained_source(str(tmp_path)) == (str(tmp_path), {})
    with pytest.raises(ValueError, match="no such GGUF file"):
        pretrained_source(str(tmp_path / "missing.gguf"))
    model = tmp_path / "models" / "Tiny.Q4_1.GGUF"
    model.parent.mkdir()
    model.write_bytes(b"GGUF")
    assert pretrained_source(str(model)) == (str(model.parent), {"gguf_file": "Tiny.Q4_1.GGUF"})


def test_the_answer_prefix_is_written_for_the_model_and_kept_in_its_answer(tmp_path, monkeypatch):
    from test_llm_profiles import ANSWER, tiny_causal_lm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tiny_causal_lm(tmp_path / "chain-lm", answer=ANSWER)
    prefix = ANSWER[0]  # '{"summarization": "': the chain model continues from it
    b = builder(tmp_path, llm_backend="hf", llm_model=path, llm_max_tokens=12, llm_answer_prefix=prefix)
    summary = b.build(limit=3)
    assert summary["generated"] == {"item": 3, "user": 3} and summary["failed"] == {"item": 0, "user": 0}
    assert b.backend.render([{"role": "user", "content": "U"}]).endswith("<|assistant|>" + prefix)
    assert {r["profile"] for r in ProfileStore(b.store.path).read_records("item").values()} == {"Fans of tiny tests"}
    # Fewer new tokens than without the prefix: the model did not write it again.
    assert summary["tokens"]["completion"] == 6 * (len(ANSWER) - 1)
