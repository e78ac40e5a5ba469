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
    if value is None:
        return ""
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays from pandas
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(s for s in (_as_text(v) for v in value) if s)
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
