r"""``python -m recbole_llm.profiles``: the profile store command (:mod:`recbole_llm.profiles_cli`,
an entry point: it builds the training split through RecBole's Config, which this layer never reads)."""

import sys

from recbole_llm.profiles_cli import main

if __name__ == "__main__":
    sys.exit(main())
