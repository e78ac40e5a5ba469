"""Item text rendered column by column with Arrow equals the row-by-row renderer on every kind of field."""

import pyarrow as pa
import pytest

from recpipe.data.templates import TEMPLATES, render_item_text, render_item_texts

ROWS = [
    {"title": "Usual Suspects, The (1995)", "genres": ["Crime", " Thriller\u3000", None, ""]},
    {"title": "Ami, L' (1990)", "genres": []},
    {"title": None, "genres": None},  # nothing to say: "" (a row Arrow's null-skipping join would drop)
    {"title": "  a\x1c b\u00a0\u2003c  ", "genres": ["x\n\ny"]},  # what str.split() counts as whitespace
    {"title": "word " * 60, "genres": ["g"] * 100},  # clipped at a word boundary
    {"title": "Ends with question?", "genres": ["dots..."]},
    {"title": "café, The", "genres": ["é" * 250]},  # lengths in characters, not bytes
    {"title": "x" * 300, "genres": ["a,;: " * 50]},  # no space to cut at; trailing punctuation trimmed
    {"title": "Foo, The, L'", "genres": ["Done!"]},
    {"title": "", "genres": [""]},
]


@pytest.mark.parametrize("batch_rows", [3, 100])
def test_columnar_rendering_equals_row_rendering(batch_rows):
    schema = pa.schema([("title", pa.string()), ("genres", pa.list_(pa.string()))])
    table = pa.Table.from_pylist(ROWS, schema=schema)
    expected = [render_item_text(r, TEMPLATES["movielens"]) for r in ROWS]
    assert render_item_texts(table, TEMPLATES["movielens"], batch_rows=batch_rows).to_pylist() == expected
    assert expected[0] == "Title: The Usual Suspects (1995). Genres: Crime, Thriller." and expected[2] == ""


def test_other_field_types_are_rendered_row_by_row():
    rows = [{"title": "Pen", "store": 12, "features": [{"colour": "blue"}], "description": None}]
    table = pa.Table.from_pylist(rows)
    template = TEMPLATES["amazon2023"]
    assert render_item_texts(table, template).to_pylist() == [render_item_text(rows[0], template)]
