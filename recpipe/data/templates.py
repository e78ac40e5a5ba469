"""Item text: each dataset's fields rendered into one string the language model reads.

A template is a list of ``(label, field, max_chars)``; empty fields are left out, lists are joined with ", ", and
long fields are cut at a word boundary so the important fields (title first) survive tokenizer truncation.

``auto`` (the default for your own files, ``--dataset generic``) builds the template from the items table's columns:
every text column the reader kept, the title first, each labelled by its name (``Description: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Template = Sequence[tuple[str, str, int]]

TEMPLATES: dict[str, Template] = {
    "movielens": [("Title", "title", 200), ("Genres", "genres", 200)],
    "amazon2023": [
        ("Title", "title", 200),
        ("Store", "store", 60),
        ("Categories", "categories", 150),
        ("Features", "features", 300),
        ("Description", "description", 300),
    ],
    "amazon2018": [
        ("Title", "title", 200),
        ("Brand", "brand", 60),
        ("Categories", "categories", 150),
        ("Description", "description", 300),
    ],
}

AUTO = "auto"
TEMPLATE_NAMES = (*TEMPLATES, AUTO)
AUTO_MAX_CHARS = {"title": 200, "name": 200}  # other columns: 300


def item_template(name: str, columns: Sequence[str]) -> Template:
    """The template ``name``, or for ``auto`` one built from the items table's ``columns`` (``item_id`` aside)."""
    if name != AUTO:
        return TEMPLATES[name]
    fields = [c for c in columns if c != "item_id"]
    fields.sort(key=lambda c: c != "title")  # stable: the title first, the others in file order
    return [(c.replace("_", " ").capitalize(), c, AUTO_MAX_CHARS.get(c, 300)) for c in fields]


_TRAILING_ARTICLE = re.compile(
    r"^(?P<name>.+), (?P<article>The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)(?P<rest>( \(.*)?)$"
)
_ENDINGS = (".", "!", "?", "…")
# what str.split() splits on besides the space, as an RE2 class (Arrow's regular expressions are RE2's)
_OTHER_WHITESPACE = "[" + "".join(f"\\x{{{c:x}}}" for c in range(0x110000) if chr(c).isspace() and c != 32) + "]"


def front_article(title: str) -> str:
    """MovieLens writes ``Usual Suspects, The (1995)``; a language model reads ``The Usual Suspects (1995)`` better."""
    m = _TRAILING_ARTICLE.match(title)
    if not m:
        return title
    sep = "" if m["article"].endswith("'") else " "
    return f"{m['article']}{sep}{m['name']}{m['rest']}"


def _clip(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    return cut.rstrip(",;:. ") + "…"


def _as_text(value: Any) -> str:
    if isinstance(value, str):  # first: most values are (a million items' worth at Amazon scale)
        return " ".join(value.split())
    if value is None:
        return ""
    if hasattr(value, "tolist"):  # numpy arrays from pandas
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(s for s in map(_as_text, value) if s)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_as_text(v)}" for k, v in value.items() if _as_text(v))
    return " ".join(str(value).split())


def render_item_text(item: dict[str, Any], template: Template) -> str:
    """Render one item's fields: ``Title: Toy Story (1995). Genres: Animation, Children's, Comedy.``"""
    parts = []
    for label, key, max_chars in template:
        text = _as_text(item.get(key))
        if key == "title":
            text = front_article(text)
        if text:
            text = _clip(text, max_chars)
            parts.append(f"{label}: {text}" + ("" if text.endswith((".", "!", "?", "…")) else "."))
    return " ".join(parts)


def render_item_texts(items: pa.Table, template: Template, batch_rows: int = 100_000) -> pa.ChunkedArray:
    """``render_item_text`` of every row of ``items``, computed column by column with Arrow, ``batch_rows`` rows at
    a time (a million items in seconds instead of half a minute); the result is the same string for every row.
    Fields that are neither text nor lists of text are rendered row by row."""
    return pa.chunked_array([_render_batch(batch, template) for batch in items.to_batches(batch_rows)], pa.string())


def _render_batch(items: pa.RecordBatch, template: Template) -> pa.Array:
    parts = []
    for label, key, max_chars in template:
        text = _column_text(items, key)
        if text is None:  # a type the columnar path does not read exactly like the row renderer
            return pa.array([render_item_text(r, template) for r in items.to_pylist()], pa.string())
        if key == "title":
            text = _front_article(text)
        long = pc.greater(pc.utf8_length(text), max_chars)
        if pc.any(long).as_py():
            cut = pc.replace_substring_regex(pc.utf8_slice_codeunits(text, 0, max_chars), r"^(.*) .*$", r"\1")
            clipped = pc.binary_join_element_wise(pc.utf8_rtrim(cut, characters=",;:. "), "…", "")
            text = pc.if_else(long, clipped, text)
        ends = pc.or_(pc.or_(pc.ends_with(text, "."), pc.ends_with(text, "!")), pc.ends_with(text, "?"))
        stop = pc.if_else(pc.or_(ends, pc.ends_with(text, "…")), "", ".")
        part = pc.binary_join_element_wise(f"{label}: ", text, stop, "")
        parts.append(pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), part))
    if not parts:
        return pa.array([""] * items.num_rows, pa.string())
    # pyarrow 26's element-wise join with null_handling="skip" drops the rows where every input is null: such a row
    # gets "" in its first part, which then joins to ""
    nothing = parts[0].is_null()
    for part in parts[1:]:
        nothing = pc.and_(nothing, part.is_null())
    parts[0] = pc.if_else(nothing, "", parts[0])
    return pc.binary_join_element_wise(*parts, " ", null_handling="skip")


def _normalised(strings) -> pa.Array:
    """``" ".join(s.split())`` of every string. Most strings are already so (tested by one cheap match); only the
    others go through the replacements, which cost ten times more."""
    needs = pc.match_substring_regex(strings, f"{_OTHER_WHITESPACE}|  |^ | $")
    if not pc.any(needs).as_py():
        return strings
    spaces = pc.replace_substring_regex(strings.filter(needs), _OTHER_WHITESPACE, " ")
    fixed = pc.utf8_trim(pc.replace_substring_regex(spaces, " {2,}", " "), characters=" ")
    return pc.replace_with_mask(strings, needs, fixed)


def _column_text(items: pa.RecordBatch, key: str) -> pa.Array | None:
    """``_as_text`` of a column of text or lists of text (a missing column is empty), else None."""
    if key not in items.column_names:
        return pa.array([""] * items.num_rows, pa.string())
    column = items.column(key)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _normalised(column.cast(pa.string()).fill_null(""))
    if pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type):
        column = column.fill_null(pa.scalar([], column.type))
        values = _normalised(pc.list_flatten(column).fill_null(""))
        parents = pc.list_parent_indices(column)
        keep = pc.not_equal(values, "")
        values, parents = values.filter(keep), parents.filter(keep)
        lengths = np.bincount(parents.to_numpy(), minlength=len(column))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        return pc.binary_join(pa.ListArray.from_arrays(offsets, values), ", ")
    return None


def _front_article(titles: pa.Array) -> pa.Array:
    """``front_article`` of every title."""
    # a cheap test first: extracting groups costs ten times more, and few titles end in an article
    candidate = pc.match_substring_regex(titles, r", (?:The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)(?: \(.*)?$")
    if not pc.any(candidate).as_py():
        return titles
    pattern = _TRAILING_ARTICLE.pattern.replace("(?P<rest>( ", "(?P<rest>(?: ")  # Arrow names every group
    found = pc.extract_regex(titles, pattern)
    matched = found.is_valid()
    article, name, rest = (pc.struct_field(found, field) for field in ("article", "name", "rest"))
    sep = pc.if_else(pc.ends_with(article, "'"), "", " ")
    return pc.if_else(matched, pc.binary_join_element_wise(article, sep, name, rest, ""), titles)
