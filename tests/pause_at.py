r"""Run ``python -m recbole_llm.profiles ARGS`` and stop it dead at one chosen moment, so that a
test can ``kill -9`` it exactly there (a real kill of a real build, at a moment a random kill
would rarely hit)::

    python tests/pause_at.py MARKER NAME -- build --dataset=tiny ...

Before the store's atomic rename onto a file named NAME (``item_ids.txt``, ``user.npy`` ...), the
process writes MARKER and sleeps; the test waits for MARKER, then kills it. The temporary file
of that rename is written and not yet renamed at that moment.
"""

import os
import sys
import time

from recbole_llm import profiles_cli


def main():
    marker, name, separator, *argv = sys.argv[1:]
    assert separator == "--", __doc__
    replace = os.replace

    def pausing_replace(src, dst):
        if os.path.basename(dst) == name:
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(60)
        replace(src, dst)

    os.replace = pausing_replace  # only a rename onto NAME pauses; every other one goes through
    return profiles_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
