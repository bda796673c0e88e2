r"""What a build costs, from the token counts and the prices given as ``llm_price_input`` and
``llm_price_output`` (USD per million prompt / completion tokens; for ``openai-batch``, the batch
prices). No price given: no cost is claimed."""

MILLION = 1_000_000


def token_cost(settings, prompt_tokens, completion_tokens):
    r"""USD for these tokens, or ``None`` when no price is set (an unset price counts as 0 when the other is set)."""
    if settings.llm_price_input is None and settings.llm_price_output is None:
        return None
    return (prompt_tokens * (settings.llm_price_input or 0.0) + completion_tokens * (settings.llm_price_output or 0.0)) / MILLION


def estimate(settings, requests, prompt_tokens):
    r"""Before a build (``--dry-run``): the prompts' cost and the most the answers can cost (every
    answer ``llm_max_tokens`` long); ``None`` without prices."""
    prompts = token_cost(settings, prompt_tokens, 0)
    if prompts is None:
        return None
    answers = None if settings.llm_max_tokens is None else token_cost(settings, 0, requests * settings.llm_max_tokens)
    return {"prompts": prompts, "answers_at_most": answers}
