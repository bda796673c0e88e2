r"""The profile store command line (an entry point), run as ``python -m recbole_llm.profiles``.

    python -m recbole_llm.profiles build  --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--model=LightGCN]
                                          [--llm=template|openai|openai-batch|hf] [--llm_model=...] [--embedder=...]
                                          [--force] [--limit N] [--dry-run] [--KEY=VALUE ...]
    python -m recbole_llm.profiles status --dataset=ml-100k [...]
    python -m recbole_llm.profiles show   --dataset=ml-100k --user=<raw id> | --item=<raw id>

The training split is built through RecBole with the same Config and seed as a training run, so
user profiles see exactly the interactions that run trains on. Any RecBole or plugin key can be
given as ``--KEY=VALUE`` (``--llm_base_url=...``, ``--llm_concurrency=32``, ``--profile_dir=...``).
``--limit N`` writes at most N profiles per kind; ``--dry-run`` prints sample prompts, the number of
requests and the estimated prompt tokens, and sends nothing.
"""

import argparse
import json
import sys

from recbole.data import create_dataset
from recbole.utils import init_logger, init_seed

from recbole_llm.build import profile_settings
from recbole_llm.config import Config
from recbole_llm.profiles.builder import ProfileBuilder
from recbole_llm.profiles.openai_api import LLMServerError
from recbole_llm.profiles.store import ProfileStore


def make_config(args):
    config_files = args.config_files.split() if args.config_files else None
    config_dict = {"llm_backend": args.llm} if args.llm else None
    # RecBole reads the --KEY=VALUE arguments this parser left, not the command's own (the verb,
    # --force, --user ...), which it would warn about or take for config keys.
    return Config(model=args.model, dataset=args.dataset, config_file_list=config_files, config_dict=config_dict,
                  command_line=args.recbole_args)


def training_split(args):
    r"""The run's training split, built exactly as ``run_recbole_llm`` builds it."""
    config = make_config(args)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train, _, _ = dataset.build()
    return config, train


def cmd_build(args):
    config, train = training_split(args)
    settings = profile_settings(config)
    builder = ProfileBuilder(settings, train)
    if args.dry_run:
        print_preview(builder.preview(limit=args.limit))
        return 0
    try:
        summary = builder.build(force=args.force, limit=args.limit)
    except LLMServerError as e:  # wrong key, model or URL: the message says which setting to check
        print(f"profile build stopped: {e}", file=sys.stderr)
        return 2
    print(f"profile store {settings.store_dir}: {json.dumps(summary)}")
    print(describe_summary(summary))
    failed = sum(summary["failed"].values())
    return 1 if failed else 0


def describe_summary(summary):
    r"""``item: 40 done, 1 failed, 3 retried; user: ...; 12.3 s; tokens: 1,234 prompt + 567 completion``"""
    parts = []
    for kind in ("item", "user"):
        part = f"{kind}: {summary['generated'][kind]} done, {summary['failed'][kind]} failed, {summary['retried'][kind]} retried"
        if summary["remaining"][kind]:
            part += f", {summary['remaining'][kind]} left by --limit"
        parts.append(part)
    parts.append(f"{summary['seconds']} s")
    if summary.get("tokens"):
        parts.append(f"tokens: {summary['tokens']['prompt']:,} prompt + {summary['tokens']['completion']:,} completion")
    if summary.get("cost") is not None:
        parts.append(f"cost: ${summary['cost']:.4f} at llm_price_input/llm_price_output")
    return "; ".join(parts)


def print_preview(report):
    print(f"DRY RUN: nothing is sent. llm={report['llm']} embedder={report['embedder']}")
    for kind, r in report["kinds"].items():
        note = ""
        if kind == "user" and report["items_pending"]:
            note = f"; user prompts grow once the {report['items_pending']} item profiles they describe are written"
        requests = "no requests (template)" if report["llm"] == "template" else f"{r['requests']} requests (plus retries)"
        print(
            f"  {kind} profiles: {r['requests']} to write = {requests}, "
            f"~{r['prompt_tokens']:,} prompt tokens (estimated, 4 characters a token){note}"
        )
    if report.get("cost"):
        cost = report["cost"]
        most = f" + at most ${cost['answers_at_most']:.4f} for the answers (llm_max_tokens each)" if cost["answers_at_most"] is not None else ""
        print(f"  estimated cost: ${cost['prompts']:.4f} for the prompts{most}")
    print(f"  embeddings: {report['embed_texts']} texts in {report['embed_batches']} batches")
    for kind, r in report["kinds"].items():
        for token, prompt in r["samples"].items():
            print(f"\n--- sample {kind} prompt ({kind} {token}) ---")
            try:
                for message in json.loads(prompt)["messages"]:
                    print(f"[{message['role']}]\n{message['content']}")
            except (KeyError, TypeError, ValueError):  # the template backend's "prompt" is the record itself
                print(prompt)


def cmd_status(args):
    config, train = training_split(args)
    settings = profile_settings(config)
    report = ProfileBuilder(settings, train, show_progress=False).status()
    manifest = report.pop("manifest")
    print(f"profile store {settings.store_dir}")
    if manifest:
        print(f"  written by llm={manifest.get('llm')} embedder={manifest.get('embedder')} dim={manifest.get('dim')}")
        print(f"  training split: {'matches this config' if report['split_matches'] else 'DIFFERS from this config (user profiles stale)'}")
    else:
        print("  no manifest: nothing built yet")
    for kind in ("item", "user"):
        r = report[kind]
        print(
            f"  {kind}: {r['done']}/{r['total']} done, {r['failed']} failed, {r['stale']} stale, {r['missing']} missing"
            + (f" (e.g. {r['examples']})" if r["examples"] else "")
        )
        for token, error in r["errors"].items():
            print(f"    failed {kind} {token}: {error}")
    complete = all(report[k]["done"] == report[k]["total"] for k in ("item", "user")) and report["split_matches"]
    return 0 if complete else 1


def cmd_show(args):
    store_dir = profile_settings(make_config(args)).store_dir
    kind, token = ("user", args.user) if args.user is not None else ("item", args.item)
    if token is None:
        print("show needs --user=<raw id> or --item=<raw id>", file=sys.stderr)
        return 2
    record = ProfileStore(store_dir).read_records(kind).get(token)
    if record is None:
        print(f"no {kind} profile for raw id {token!r} in {store_dir}", file=sys.stderr)
        return 1
    print(f"{kind} {token} ({record['source']}):\n{record['profile']}")
    if record.get("unparsed"):  # llm_unparsed: keep_raw
        print(f"\n(kept raw, unparsed: {record['unparsed']})")
    if record.get("reasoning"):
        print(f"\nreasoning: {record['reasoning']}")
    return 0


def parse_args(argv=None):
    r"""The command's own options; ``recbole_args`` holds the rest, the ``--KEY=VALUE`` for RecBole."""
    parser = argparse.ArgumentParser(prog="python -m recbole_llm.profiles", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("command", choices=["build", "status", "show"])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--model", "-m", default="LightGCN", help="model whose config the split is built with")
    parser.add_argument("--config_files", default=None, help="space-separated config files")
    parser.add_argument("--llm", choices=["template", "openai", "openai-batch", "hf"], default=None, help="profile writer (sets llm_backend)")
    parser.add_argument("--force", action="store_true", help="regenerate and re-embed everything")
    parser.add_argument("--limit", type=int, default=None, help="write at most N profiles of each kind in this run")
    parser.add_argument("--dry-run", action="store_true", help="print sample prompts, request count and estimated tokens; send nothing")
    parser.add_argument("--user", default=None)
    parser.add_argument("--item", default=None)
    args, recbole_args = parser.parse_known_args(argv)
    args.recbole_args = recbole_args
    return args


def main(argv=None):
    args = parse_args(argv)
    return {"build": cmd_build, "status": cmd_status, "show": cmd_show}[args.command](args)
