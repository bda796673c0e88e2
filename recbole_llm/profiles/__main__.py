r"""Profile store command line.

    python -m recbole_llm.profiles build  --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--model=LightGCN] [--force] [--KEY=VALUE ...]
    python -m recbole_llm.profiles status --dataset=ml-100k [...]
    python -m recbole_llm.profiles show   --dataset=ml-100k --user=<raw id> | --item=<raw id>

The training split is built through RecBole with the same Config and seed as a training run, so
user profiles see exactly the interactions that run trains on. Any RecBole or plugin key can be
given as ``--KEY=VALUE`` (``--llm_backend=openai``, ``--profile_dir=...``).
"""

import argparse
import json
import sys

from recbole.data import create_dataset
from recbole.utils import init_logger, init_seed

import recbole_llm  # noqa: F401  (compat shims)
from recbole_llm.config import Config
from recbole_llm.profiles.builder import ProfileBuilder, profile_dir
from recbole_llm.profiles.store import ProfileStore


def training_split(args):
    r"""The run's training split, built exactly as ``run_recbole_llm`` builds it."""
    config_files = args.config_files.split() if args.config_files else None
    config = Config(model=args.model, dataset=args.dataset, config_file_list=config_files)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train, _, _ = dataset.build()
    return config, train


def cmd_build(args):
    config, train = training_split(args)
    summary = ProfileBuilder(config, train, show_progress=True).build(force=args.force)
    print(f"profile store {profile_dir(config)}: {json.dumps(summary)}")
    failed = sum(summary["failed"].values())
    return 1 if failed else 0


def cmd_status(args):
    config, train = training_split(args)
    report = ProfileBuilder(config, train, show_progress=False).status()
    manifest = report.pop("manifest")
    print(f"profile store {profile_dir(config)}")
    if manifest:
        print(f"  written by llm={manifest.get('llm')} embedder={manifest.get('embedder')} dim={manifest.get('dim')}")
        print(f"  training split: {'matches this config' if report['split_matches'] else 'DIFFERS from this config (user profiles stale)'}")
    else:
        print("  no manifest: nothing built yet")
    for kind in ("item", "user"):
        r = report[kind]
        print(f"  {kind}: {r['done']}/{r['total']} done, {r['stale']} stale, {r['missing']} missing" + (f" (e.g. {r['examples']})" if r["examples"] else ""))
    complete = all(report[k]["done"] == report[k]["total"] for k in ("item", "user")) and report["split_matches"]
    return 0 if complete else 1


def cmd_show(args):
    config_files = args.config_files.split() if args.config_files else None
    config = Config(model=args.model, dataset=args.dataset, config_file_list=config_files)
    kind, token = ("user", args.user) if args.user is not None else ("item", args.item)
    if token is None:
        print("show needs --user=<raw id> or --item=<raw id>", file=sys.stderr)
        return 2
    record = ProfileStore(profile_dir(config)).read_records(kind).get(token)
    if record is None:
        print(f"no {kind} profile for raw id {token!r} in {profile_dir(config)}", file=sys.stderr)
        return 1
    print(f"{kind} {token} ({record['source']}):\n{record['profile']}")
    if record.get("reasoning"):
        print(f"\nreasoning: {record['reasoning']}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_llm.profiles", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "status", "show"])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--model", "-m", default="LightGCN", help="model whose config the split is built with")
    parser.add_argument("--config_files", default=None, help="space-separated config files")
    parser.add_argument("--force", action="store_true", help="regenerate and re-embed everything")
    parser.add_argument("--user", default=None)
    parser.add_argument("--item", default=None)
    args, _ = parser.parse_known_args(argv)
    return {"build": cmd_build, "status": cmd_status, "show": cmd_show}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
