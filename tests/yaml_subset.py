"""A reader for the YAML that deploy/*.yaml is written in, for tests without PyYAML.

The subset: documents separated by `---`, block mappings and sequences by indentation
(a sequence may sit at its key's indent), `- key: value` items, flow sequences of scalars
(`["ALL"]`), plain and quoted scalars (int, true/false, null, strings), `#` comments.
Anything else (anchors, block scalars `|` `>`, flow mappings) is refused, so a manifest
that leaves the subset fails loudly instead of being misread. (On deploy/*.yaml its result
equals PyYAML 6.0.3's safe_load_all, checked with the system python3, which has PyYAML;
the project's venv has not.)
"""
import re

_INT = re.compile(r"^[-+]?\d+$")


class Unsupported(ValueError):
    pass


def _strip_comment(text):
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def scalar(text):
    text = text.strip()
    if text[:1] in "&*!|>{":
        raise Unsupported(f"not in the YAML subset: {text!r}")
    if text.startswith("["):
        if not text.endswith("]"):
            raise Unsupported(f"multi-line flow sequence: {text!r}")
        inner = text[1:-1].strip()
        return [scalar(part) for part in _split_commas(inner)] if inner else []
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text in ("true", "True"):
        return True
    if text in ("false", "False"):
        return False
    if text in ("null", "~", ""):
        return None
    if _INT.match(text):
        return int(text)
    return text


def _split_commas(text):
    parts, current, quote = [], "", None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == ",":
            parts.append(current)
            current = ""
            continue
        current += char
    return parts + [current]


def _key_value(text):
    """(key, rest) of a mapping line `key: rest` / `key:`, or None."""
    if text[:1] in "\"'[":
        return None
    match = re.match(r"^([^\s:][^:]*?):(\s+(.*))?$", text)
    if not match:
        return None
    return match.group(1).strip(), (match.group(3) or "").strip()


def _block(lines, i, indent):
    if lines[i][1].startswith("-"):
        return _sequence(lines, i, indent)
    return _mapping(lines, i, indent)


def _mapping(lines, i, indent):
    result = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        pair = _key_value(lines[i][1])
        if pair is None:
            raise Unsupported(f"line {lines[i][2]}: not a mapping entry: {lines[i][1]!r}")
        key, rest = pair
        if key in result:
            raise Unsupported(f"line {lines[i][2]}: duplicate key {key!r}")
        i += 1
        if rest:
            result[key] = scalar(rest)
        elif i < len(lines) and (lines[i][0] > indent or (
                lines[i][0] == indent and lines[i][1].startswith("- "))):
            result[key], i = _block(lines, i, lines[i][0])
        else:
            result[key] = None
    return result, i


def _sequence(lines, i, indent):
    items = []
    while i < len(lines) and lines[i][0] == indent and (
            lines[i][1] == "-" or lines[i][1].startswith("- ")):
        rest = lines[i][1][1:].lstrip()
        if not rest:
            item, i = _block(lines, i + 1, lines[i + 1][0])
        elif _key_value(rest) is not None:
            inner = indent + len(lines[i][1]) - len(rest)
            lines[i] = (inner, rest, lines[i][2])
            item, i = _mapping(lines, i, inner)
        else:
            item, i = scalar(rest), i + 1
        items.append(item)
    return items, i


def load_all(text):
    """The documents of `text`, as dicts, lists and scalars."""
    documents, lines = [], []
    for number, raw in enumerate(text.splitlines() + ["---"], 1):
        if raw.strip() == "---":
            if lines:
                value, end = _block(lines, 0, lines[0][0])
                if end != len(lines):
                    raise Unsupported(f"line {lines[end][2]}: unexpected indentation")
                documents.append(value)
            lines = []
            continue
        if "\t" in raw[:len(raw) - len(raw.lstrip())]:
            raise Unsupported(f"line {number}: a tab in the indentation")
        stripped = _strip_comment(raw)
        if stripped.strip():
            lines.append((len(stripped) - len(stripped.lstrip()), stripped.strip(), number))
    return documents
