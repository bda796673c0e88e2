r"""Progress bars that suit where they are written: live on a terminal, a few lines in a log file."""

import sys

from tqdm import tqdm

LOG_REFRESH_SECONDS = 30  # on a file or a pipe: one line per bar at most this often, and its last state


def is_terminal(stream=None):
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def progress_bar(total, desc, unit, enabled):
    r"""A tqdm bar over ``total`` steps, off unless ``enabled`` (RecBole's ``show_progress``).

    On a non-terminal every refresh is a new line, so the bar refreshes at most every
    :data:`LOG_REFRESH_SECONDS`; update its postfix with ``refresh=False``.
    """
    terminal = is_terminal()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled,
                mininterval=0.1 if terminal else LOG_REFRESH_SECONDS, dynamic_ncols=terminal)
