r"""The one place that talks to an OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server).

Used by the ``openai`` profile writer (:mod:`recbole_llm.profiles.llm`) and the ``openai:<model>``
embedder (:mod:`recbole_llm.profiles.embedders`):

- :func:`make_client`: the official ``openai`` client for ``llm_base_url``, with the key read from
  the environment variable NAMED by ``llm_api_key_env``. The key is never a settings value, and it is
  scrubbed from every error message this module produces (:func:`describe_error`).
- :func:`call_with_retries`: exponential backoff with jitter on 429, 5xx, timeouts, dropped
  connections and malformed response bodies, honouring ``Retry-After``. The client's own retries
  are switched off so that every retry is counted and can be cancelled.
"""

import email.utils
import os
import random
import threading
import time
from dataclasses import dataclass, field

RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx
FATAL_STATUS = {401, 403, 404}  # wrong key, model or URL: every further request would fail the same way
MAX_BACKOFF = 60.0  # seconds; the exponential backoff stops growing here
MAX_RETRY_AFTER = 600.0  # seconds; a longer Retry-After is still honoured, but only up to this
NO_KEY = "no-key"  # sent to local servers (vLLM, Ollama) that need none: the client insists on a value


class LLMServerError(RuntimeError):
    r"""The server refuses every request (wrong key, model or URL): stop instead of failing each profile."""


class ServerUnreachable(LLMServerError):
    r"""``llm_max_connection_failures`` requests in a row could not reach the server: stop the build."""


class ConnectionBreaker:
    r"""Counts requests in a row, over all request threads, that could not reach the server
    (refused, dropped, timed out); any answer from the server resets it. ``limit`` 0 never trips."""

    def __init__(self, limit):
        self.limit = limit
        self.failures = 0
        self._lock = threading.Lock()

    def reached(self):
        with self._lock:
            self.failures = 0

    def unreachable(self):
        r"""Count one failure; whether the limit is now reached."""
        with self._lock:
            self.failures += 1
            return bool(self.limit) and self.failures >= self.limit


class MalformedResponse(ValueError):
    r"""The server answered 200 but not with the response the protocol promises (retryable)."""


class Cancelled(RuntimeError):
    r"""The run is stopping (a fatal error elsewhere, or Ctrl-C): give up without retrying."""


@dataclass
class RetryPolicy:
    max_retries: int = 5
    backoff_base: float = 1.0
    stop: threading.Event = field(default_factory=threading.Event)
    breaker: ConnectionBreaker = field(default_factory=lambda: ConnectionBreaker(0))

    @classmethod
    def from_settings(cls, settings):
        return cls(max_retries=settings.llm_max_retries, backoff_base=settings.llm_backoff_base,
                   breaker=ConnectionBreaker(settings.llm_max_connection_failures))

    def delay(self, attempt, retry_after=None):
        r"""Seconds to wait before retry ``attempt`` (0-based): the server's Retry-After when it sent
        one, else exponential backoff; jittered so parallel requests do not retry in lockstep."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER) * random.uniform(1.0, 1.25)
        return min(MAX_BACKOFF, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)


def api_key_from_env(settings):
    r"""The key from the environment variable named by ``llm_api_key_env``; ``None`` if unset."""
    return os.environ.get(settings.llm_api_key_env or "") or None


def make_client(settings):
    r"""The ``openai`` client for the configured server, without the client's own retries."""
    import openai

    base_url, key = settings.llm_base_url, api_key_from_env(settings)
    if key is None and base_url is None:
        raise LLMServerError(
            f"No API key: the environment variable {settings.llm_api_key_env!r} (named by llm_api_key_env) is "
            "not set. Export it, or set llm_base_url to a local server that needs no key."
        )
    return openai.OpenAI(api_key=key or NO_KEY, base_url=base_url, timeout=settings.llm_timeout, max_retries=0)


MAX_ERROR_CHARS = 200  # of a server's error message, in records and logs


def redact(text, settings):
    r"""``text`` with the API key (if any) replaced by ``***``. Mask BEFORE any cut: a key cut in
    two by a truncation would no longer match, and its visible part would leak."""
    key = api_key_from_env(settings)
    return text.replace(key, "***") if key else text


def error_text(text, settings, limit=MAX_ERROR_CHARS):
    r"""The first line of ``text``, key masked first, then cut to ``limit`` characters: the one way
    an error becomes text in this package (records, logs, messages)."""
    lines = redact(str(text), settings).strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[:limit] + "..."


def describe_error(error, settings):
    r"""A short, key-free description of a failed request: status code or error type, and message."""
    status = getattr(error, "status_code", None)
    body = getattr(error, "body", None)
    message = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else None
    message = error_text(message or getattr(error, "message", None) or error, settings)
    head = f"HTTP {status}" if status is not None else type(error).__name__
    return f"{head}: {message}" if message else head


def retry_after_seconds(error):
    r"""The server's requested wait in seconds (``Retry-After``/``retry-after-ms``), or ``None``."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:  # an HTTP date
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def is_retryable(error):
    import openai

    if isinstance(error, openai.APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    # Timeouts and dropped connections, and a 200 whose body is not the promised JSON.
    return isinstance(error, (openai.APIConnectionError, openai.APIResponseValidationError, ValueError))


def call_with_retries(request, policy, settings, on_retry=None):
    r"""Return ``request()``, retrying transient failures up to ``policy.max_retries`` times.

    A fatal status (401/403/404) raises :class:`LLMServerError`; ``llm_max_connection_failures``
    attempts in a row (over all threads) that do not reach the server raise :class:`ServerUnreachable`;
    any other non-retryable error, or the last transient one, is re-raised as is (the caller records
    it with :func:`describe_error`).
    """
    import openai

    for attempt in range(policy.max_retries + 1):
        if policy.stop.is_set():
            raise Cancelled("stopping")
        try:
            result = request()
        except Exception as error:  # noqa: BLE001 (classified below; the unknown ones re-raised)
            if isinstance(error, openai.APIConnectionError):
                if policy.breaker.unreachable():
                    raise ServerUnreachable(
                        f"{policy.breaker.limit} requests in a row could not reach {settings.llm_base_url or 'api.openai.com'} "
                        f"(last: {describe_error(error, settings)}), so the build stopped (llm_max_connection_failures="
                        f"{policy.breaker.limit}). Every profile written so far is kept: once the server answers, run the "
                        "same command again and the build resumes where it stopped."
                    ) from None
            else:
                policy.breaker.reached()  # the server answered, if not as hoped
            if isinstance(error, openai.APIStatusError) and error.status_code in FATAL_STATUS:
                raise LLMServerError(
                    f"{settings.llm_base_url or 'api.openai.com'} refused the request ({describe_error(error, settings)}). "
                    f"Check llm_model ({settings.llm_model!r}), llm_base_url, and the key in the environment "
                    f"variable {settings.llm_api_key_env!r}."
                ) from None
            if not is_retryable(error) or attempt == policy.max_retries:
                raise
            if on_retry is not None:
                on_retry(error)
            if policy.stop.wait(policy.delay(attempt, retry_after_seconds(error))):
                raise Cancelled("stopping") from None
        else:
            policy.breaker.reached()
            return result
    raise AssertionError("unreachable")
