r"""Throughput of profile generation and embedding.

1. The ``openai`` backend against the local OpenAI-compatible test server (tests/openai_server.py,
   in its own process) with a fixed per-request latency, at several ``llm_concurrency`` values. The ideal is
   concurrency / latency requests per second; the target is at least 80% of it.
2. The default embedder (the bundled all-MiniLM-L6-v2) on this machine, in texts per second, on
   profile-like texts of about 60 words.

    python benchmarks/llm_throughput.py
    python benchmarks/llm_throughput.py --latency 0.2 --concurrency 1 4 16 --rounds 8 --texts 1024
"""

import argparse
import contextlib
import multiprocessing
import os
import random
import sys
import time


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from openai_server import OpenAIServer  # noqa: E402
from recbole_llm.profiles.embedders import SentenceTransformerEmbedder  # noqa: E402
from recbole_llm.profiles.llm import OpenAIBackend  # noqa: E402
from recbole_llm.profiles.settings import ProfileSettings  # noqa: E402

WORDS = "drama comedy thriller romance action fans viewers enjoy classic witty dark slow epic family crime".split()


def item_records(n):
    rng = random.Random(0)
    return [
        {"id": str(i), "title": f"Movie {i}", "year": str(1950 + i % 70), "categories": rng.sample(WORDS[:5], 2)}
        for i in range(n)
    ]


def _serve(latency, connection):
    with OpenAIServer(api_key="sk-bench", latency=latency) as server:
        connection.send(server.url)
        connection.recv()  # until the benchmark is done


@contextlib.contextmanager
def server_process(latency):
    r"""The test server in its own process, as a real server is: it does not share the client's GIL."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(latency, theirs), daemon=True)
    process.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(timeout=10)


def llm_throughput(latency, concurrency, rounds):
    r"""Requests per second of OpenAIBackend.generate at ``concurrency`` against a server answering in ``latency`` s."""
    os.environ["BENCH_KEY"] = "sk-bench"
    n = max(concurrency * rounds, 10)
    with server_process(latency) as url:
        settings = ProfileSettings(
            dataset="ml-100k", data_path=".", llm_backend="openai", llm_model="bench", llm_base_url=url,
            llm_api_key_env="BENCH_KEY", llm_concurrency=concurrency,
        )
        backend = OpenAIBackend(settings)
        prompts = [backend.prompt("item", r) for r in item_records(n)]
        list(backend.generate("item", prompts[: min(concurrency, 4)]))  # warm up: client, connections
        started = time.perf_counter()
        results = list(backend.generate("item", prompts))
        seconds = time.perf_counter() - started
    assert len(results) == n and all(r.error is None for _, r in results), "the benchmark server answered with errors"
    return n, seconds


def embed_throughput(n_texts, batch_size):
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(n_texts)]
    embedder = SentenceTransformerEmbedder(batch_size=batch_size)
    embedder.embed(texts[:batch_size])  # warm up: load the model
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - started
    assert vectors.shape == (n_texts, 384)
    return n_texts / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=8, help="requests per concurrency slot")
    parser.add_argument("--texts", type=int, default=1024, help="texts to embed")
    parser.add_argument("--embed-batch-size", type=int, default=64)
    args = parser.parse_args()

    import torch

    print(f"openai backend vs local server, {args.latency * 1000:.0f} ms per request\n")
    print("| llm_concurrency | requests | seconds | requests/s | ideal (c/latency) | % of ideal |")
    print("|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        n, seconds = llm_throughput(args.latency, concurrency, args.rounds)
        ideal = concurrency / args.latency
        print(f"| {concurrency} | {n} | {seconds:.2f} | {n / seconds:.1f} | {ideal:.1f} | {100 * n / seconds / ideal:.0f}% |")
    rate = embed_throughput(args.texts, args.embed_batch_size)
    print(f"\nembedding: all-MiniLM-L6-v2 (sentence-transformers), {args.texts} texts of 60 words, batch "
          f"{args.embed_batch_size}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs: {rate:.0f} texts/s")
    # The machine may be shared: the load says how much of it this run had.
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
