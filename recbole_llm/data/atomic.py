r"""The atomic files RecBole is about to read, checked first so that a broken one is named.

RecBole reports an empty ``.inter`` file as "not enough values to unpack" and one with a header but
no interactions as "Some feat is empty, please check the filtering settings", neither naming the
file. The entry points create datasets through :func:`create_dataset`, which checks the
interaction files the config names (``<dataset>.inter``, or the ``benchmark_filename`` parts) and
then hands over to RecBole's own.
"""

import os

from recbole.data import create_dataset as recbole_create_dataset

from recbole_llm.checks import SettingError


class DatasetFileError(SettingError):
    r"""An atomic file RecBole cannot read; the message names the file and what it should hold."""


def inter_files(config):
    r"""Paths of the interaction files RecBole reads for ``config``."""
    parts = config["benchmark_filename"]
    names = [f"{config['dataset']}.{part}.inter" for part in parts] if parts else [f"{config['dataset']}.inter"]
    return [os.path.join(config["data_path"], name) for name in names]


def check_inter_files(config):
    r"""Refuse an interaction file that is empty, has a header without ``name:type`` columns, or
    holds no interaction. A missing file is left to RecBole (it names it, or downloads the dataset)."""
    sep = config["field_separator"]
    for path in inter_files(config):
        if not os.path.isfile(path):
            continue
        with open(path, encoding=config["encoding"]) as f:
            header = f.readline().rstrip("\r\n")
            has_row = any(line.strip() for line in f)
        if not header.strip():
            raise DatasetFileError(
                f"{path} is empty: RecBole reads a header line of name:type columns separated by "
                f"{sep!r} (e.g. user_id:token{sep}item_id:token) and then one interaction per line."
            )
        untyped = [column for column in header.split(sep) if ":" not in column]
        if untyped:
            raise DatasetFileError(
                f"{path}: header column(s) {untyped} have no type; RecBole expects name:type columns separated by "
                f"{sep!r} (e.g. user_id:token{sep}item_id:token)."
            )
        if not has_row:
            raise DatasetFileError(f"{path} has a header but no interactions: add one interaction per line below it.")


def create_dataset(config):
    r"""RecBole's ``create_dataset``, after :func:`check_inter_files`."""
    check_inter_files(config)
    return recbole_create_dataset(config)
