r"""The profile store command line (an entry point), run as ``python -m recbole_llm.profiles``.

    python -m recbole_llm.profiles build  --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--model=LightGCN]
                                          [--llm=template|openai|openai-batch|hf] [--llm_model=...] [--embedder=...]
                                          [--rewrite | --force] [--yes] [--limit N] [--dry-run] [--KEY=VALUE ...]
    python -m recbole_llm.profiles embed  --dataset=ml-100k [--embedder=...] [--rewrite]
    python -m recbole_llm.profiles status --dataset=ml-100k [...]
    python -m recbole_llm.profiles show   --dataset=ml-100k --user=<raw id> | --item=<raw id>

The training split is built through RecBole with the same Config and seed as a training run, so
user profiles see exactly the interactions that run trains on. Any RecBole or plugin key can be
given as ``--KEY=VALUE`` (``--llm_base_url=...``, ``--llm_concurrency=32``, ``--profile_dir=...``).
``--limit N`` writes at most N profiles per kind; ``--dry-run`` prints sample prompts, the number of
requests and the estimated prompt tokens, and sends nothing.

A build writes what is missing and never replaces a profile paid for (an LLM's, an import's):
``--rewrite`` replaces the stale ones (written for another prompt or by another writer),
``--force`` every one; both say how many and how many requests that costs before they start, and
ask for confirmation on a terminal (``--yes`` skips the question). ``embed`` recomputes vectors
from the stored texts (torn, NaN, missing; ``--rewrite``: all, with the configured embedder) and
sends no LLM request. ``status`` runs the checks a training run makes of the store.
See docs/profiles-store.md.
"""

import argparse
import json
import sys

from recbole.utils import init_logger, init_seed

from recbole_llm.build import make_builder, profile_settings
from recbole_llm.checks import SettingError
from recbole_llm.config import Config
from recbole_llm.data.atomic import create_dataset
from recbole_llm.data.loader import checked_profiles
from recbole_llm.profiles.builder import FREE_WRITERS
from recbole_llm.profiles.openai_api import LLMServerError
from recbole_llm.profiles.store import ProfileStore, ProfileStoreError


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
    builder = make_builder(config, train)
    if args.dry_run:
        print_preview(builder.preview(limit=args.limit))
        return 0
    if (args.force or args.rewrite) and not confirm_replacements(builder, args):
        print("nothing replaced: the build was not confirmed", file=sys.stderr)
        return 1
    try:
        summary = builder.build(force=args.force, limit=args.limit, rewrite=args.rewrite)
    except LLMServerError as e:  # wrong key, model or URL, or an unreachable server: the message says what to do
        print(f"profile build stopped: {e}", file=sys.stderr)
        return 2
    except ProfileStoreError as e:  # another writer's build holds the store, another embedder, ids only
        print(f"profile build refused: {e}", file=sys.stderr)
        return 2
    print(f"profile store {settings.store_dir}: {json.dumps(summary)}")
    print(describe_summary(summary))
    failed = sum(summary["failed"].values())
    return 1 if failed else 0


def confirm_replacements(builder, args):
    r"""Say what ``--force``/``--rewrite`` replaces and what it costs; on a terminal, ask (unless ``--yes``)."""
    report = builder.replacements(force=args.force, rewrite=args.rewrite)
    flag = "--force" if args.force else "--rewrite"
    parts = []
    for kind, r in report["kinds"].items():
        writers = ", ".join(f"{n} by {w}" for w, n in sorted(r["by_writer"].items()))
        parts.append(f"{r['replaced']} {kind} profiles" + (f" ({writers})" if writers else ""))
    writer = report["writer"]
    cost = "no requests (the template writer)" if writer in FREE_WRITERS else f"{report['requests']} requests to {writer} (plus retries)"
    print(f"{flag} replaces {' and '.join(parts)} with profiles written by {writer}: {cost}, besides what is missing.")
    if report["embedder_change"]:
        print(f"{flag} also re-embeds every profile with {report['embedder_change'][1]} (the vectors were made by {report['embedder_change'][0]}).")
    if sum(r["replaced"] for r in report["kinds"].values()) == 0 and not report["embedder_change"]:
        return True
    if args.yes or not sys.stdin.isatty():
        return True
    answer = input("Replace them? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_embed(args):
    config, train = training_split(args)
    settings = profile_settings(config)
    try:
        embedded = make_builder(config, train).embed(rewrite=args.rewrite)
    except ProfileStoreError as e:
        print(f"embedding refused: {e}", file=sys.stderr)
        return 2
    print(f"profile store {settings.store_dir}: embedded {json.dumps(embedded)} texts; no profile was requested")
    return 0


def describe_summary(summary):
    r"""``item: 40 done, 1 failed, 3 retried; user: ...; 12.3 s; tokens: 1,234 prompt + 567 completion``"""
    parts = []
    for kind in ("item", "user"):
        part = f"{kind}: {summary['generated'][kind]} done, {summary['failed'][kind]} failed, {summary['retried'][kind]} retried"
        if summary["remaining"][kind]:
            part += f", {summary['remaining'][kind]} left by --limit"
        if summary.get("kept", {}).get(kind):
            part += f", {summary['kept'][kind]} kept (written for another prompt or writer; --rewrite replaces them)"
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
    report = make_builder(config, train, show_progress=False).status()
    manifest = report.pop("manifest")
    print(f"profile store {settings.store_dir}")
    if manifest:
        print(f"  written by llm={manifest.get('llm')} embedder={manifest.get('embedder')} dim={manifest.get('dim')}")
        print(f"  training split: {'matches this config' if report['split_matches'] else 'DIFFERS from this config (user profiles stale)'}")
    else:
        print("  no manifest: nothing built yet")
    for kind in ("item", "user"):
        r = report[kind]
        kept = ""
        if r["kept"]:
            writers = ", ".join(f"{n} by {w}" for w, n in sorted(r["kept_by"].items()))
            kept = f" ({r['kept']} of them kept: written for another prompt or writer ({writers}); --rewrite replaces them)"
        print(
            f"  {kind}: {r['done'] + r['kept']}/{r['total']} done{kept}, {r['failed']} failed, {r['stale']} stale, {r['missing']} missing"
            + (f" (e.g. {r['examples']})" if r["examples"] else "")
        )
        for token, error in r["errors"].items():
            print(f"    failed {kind} {token}: {error}")
    complete = all(report[k]["done"] + report[k]["kept"] == report[k]["total"] for k in ("item", "user")) and report["split_matches"]
    if manifest:
        complete = check_as_training(config, train, manifest) and complete
    return 0 if complete else 1


def check_as_training(config, train, manifest):
    r"""Run the checks a training run makes of the store (the loader's own functions): each kind's
    vector set first, so that every broken one is named, then the whole store for this run."""
    store = ProfileStore(profile_settings(config).store_dir, config["dataset"])
    problems = []
    for kind in ("item", "user"):
        try:
            store.read_vectors(kind, require_seal=manifest.get("format_version", 1) >= 2)
        except ProfileStoreError as e:
            problems.append(str(e))
    if not problems:
        try:
            checked_profiles(config, train)
        except ProfileStoreError as e:
            problems.append(str(e))
    for problem in problems:
        print(f"  training would refuse this store: {problem}")
    if not problems:
        print("  vectors: whole and finite, one per profile, as training checks them")
    return not problems


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
    parser.add_argument("command", choices=["build", "embed", "status", "show"])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--model", "-m", default="LightGCN", help="model whose config the split is built with")
    parser.add_argument("--config_files", default=None, help="space-separated config files")
    parser.add_argument("--llm", choices=["template", "openai", "openai-batch", "hf"], default=None, help="profile writer (sets llm_backend)")
    parser.add_argument("--force", action="store_true", help="write and embed every profile again (says how many, and asks on a terminal)")
    parser.add_argument("--rewrite", action="store_true",
                        help="also replace kept profiles (paid for, written for another prompt or writer) and re-embed with another embedder")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before --force/--rewrite replaces profiles")
    parser.add_argument("--limit", type=int, default=None, help="write at most N profiles of each kind in this run")
    parser.add_argument("--dry-run", action="store_true", help="print sample prompts, request count and estimated tokens; send nothing")
    parser.add_argument("--user", default=None)
    parser.add_argument("--item", default=None)
    args, recbole_args = parser.parse_known_args(argv)
    args.recbole_args = recbole_args
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return {"build": cmd_build, "embed": cmd_embed, "status": cmd_status, "show": cmd_show}[args.command](args)
    except (SettingError, ProfileStoreError) as e:  # a setting, a data file or the store: the message says which and the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
