r"""Typed checks of setting values, shared by every layer's settings (depends on nothing of ours).

A check is a callable ``value -> value`` (possibly converted, e.g. ``"3"`` -> ``3``) that raises
:class:`SettingError` with a message saying what is allowed; :func:`check` adds the key and the
value, so that every refused setting reads ``align_weight=-1: must be a finite number >= 0``.
"""

import math
import os


class SettingError(ValueError):
    r"""A setting's value is not allowed; the message names the key, the value and what is allowed."""


class _Check:
    def __init__(self, describe, convert):
        self.describe = describe
        self._convert = convert

    def __call__(self, value):
        try:
            return self._convert(value)
        except (TypeError, ValueError):
            raise SettingError(f"must be {self.describe}") from None


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


def _integer(value):
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, float) and not value.is_integer():
        raise ValueError
    if isinstance(value, str):
        value = value.strip()
    return int(value)


def integer(minimum=None):
    def convert(value):
        value = _integer(value)
        if minimum is not None and value < minimum:
            raise ValueError
        return value

    return _Check("an integer" + (f" >= {minimum}" if minimum is not None else ""), convert)


def number(minimum=None, maximum=None, open_minimum=False, open_maximum=False):
    r"""A finite number within the given bounds (``open_*``: the bound itself is excluded)."""
    words = ["a finite number"]
    if minimum is not None:
        words.append(f"{'>' if open_minimum else '>='} {minimum}")
    if maximum is not None:
        words.append(f"{'<' if open_maximum else '<='} {maximum}")

    def convert(value):
        value = _number(value)
        if minimum is not None and (value < minimum or (open_minimum and value == minimum)):
            raise ValueError
        if maximum is not None and (value > maximum or (open_maximum and value == maximum)):
            raise ValueError
        return value

    return _Check(" ".join(words[:1]) + (" " + " and ".join(words[1:]) if len(words) > 1 else ""), convert)


def choice(*allowed):
    def convert(value):
        if value not in allowed:
            raise ValueError
        return value

    return _Check("one of " + ", ".join(map(str, allowed)), convert)


def text():
    def convert(value):
        if not isinstance(value, str) or not value:
            raise TypeError
        return value

    return _Check("a non-empty string", convert)


def existing_file():
    def convert(value):
        if not isinstance(value, str) or not value:
            raise TypeError
        if not os.path.isfile(value):
            raise ValueError
        return value

    return _Check("the path of an existing file", convert)


def boolean():
    def convert(value):
        if not isinstance(value, bool):
            raise TypeError
        return value

    return _Check("true or false", convert)


def text_list():
    r"""A list of non-empty strings; a single string is a list of one."""

    def convert(value):
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise TypeError
        return list(value)

    return _Check("a string or a list of strings", convert)


def optional(inner):
    r"""``inner``, or ``None`` (``~`` in YAML)."""
    return _Check(f"{inner.describe}, or ~", lambda value: None if value is None else inner(value))


def keyword_or(word, inner):
    r"""The string ``word``, or ``inner``."""
    return _Check(f"{word} or {inner.describe}", lambda value: word if value == word else inner(value))


def check(key, value, rule):
    r"""``rule(value)``, or :class:`SettingError` naming ``key`` and ``value``."""
    try:
        return rule(value)
    except SettingError as e:
        raise SettingError(f"{key}={value!r}: {e}") from None


def check_all(values, rules):
    r"""``{key: rule(values[key])}`` for every key of ``rules`` present in ``values`` (a mapping)."""
    return {key: check(key, values[key], rule) for key, rule in rules.items() if key in values}


def increasing_integers(minimum=None):
    r"""A list of strictly increasing integers (each ``>= minimum``); a single integer is a list of one."""
    single = integer(minimum)

    def convert(value):
        value = [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value
        if not isinstance(value, (list, tuple)) or not value:
            raise TypeError
        value = [single(v) for v in value]
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError
        return value

    return _Check("a non-empty list of strictly increasing integers" + (f" >= {minimum}" if minimum is not None else ""), convert)
