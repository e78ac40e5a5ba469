"""Synthetic Amazon Reviews 2023 categories of any size, for cost curves (not for quality figures).

python bench/scale_data.py --items 10000 --out bench/data/scale      # writes Scale_10K.jsonl.gz + meta_Scale_10K...

Writes `<Category>.jsonl.gz` (reviews, every field of the 2023 review schema) and `meta_<Category>.jsonl.gz` (item
metadata) for `--items` items and about `--per-item` reviews per item, streaming: memory holds one chunk of users
and a few arrays of one number per item, so a million items (ten million reviews) fits in well under a gigabyte.

The structure a model can learn:
- items belong to topics arranged on a ring; an item's text names its topic (category path, topic words);
- a user's taste is a position on the ring that drifts as a random walk; each review's item comes from a topic near
  the current taste;
- within a topic, half the draws follow a Zipf popularity over the whole catalogue and half go round-robin through
  the topic's items, so popularity is long-tailed and yet almost every item keeps the five reviews a 5-core needs.

Review text (not read by recpipe, but part of what a reader must parse) has a long-tailed length, median about 180
characters, as in the real dumps. Timestamps are milliseconds, as in the 2023 files. A finished pair of files is
recorded in `<Category>.json` beside them and skipped by the next call (resumable per size).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

ADJECTIVES = (
    "soft gentle bold bright classic compact deluxe durable elegant essential fresh light natural organic "
    "portable premium pure quick rich sleek smooth sturdy travel ultra vintage warm wireless everyday gold "
    "silver matte glossy herbal floral citrus fragrance-free hydrating nourishing lightweight heavy-duty"
).split()
NOUNS = (
    "cream serum lotion shampoo conditioner brush comb mirror towel candle soap balm mask cleanser toner "
    "moisturizer sunscreen lipstick eyeliner mascara polish remover clipper trimmer dryer straightener curler "
    "sponge applicator palette primer powder blush bronzer highlighter spray mist oil scrub gel foam wax kit "
    "set bag case organizer holder stand tray bottle jar pump dispenser headphones cable charger adapter "
    "speaker mouse keyboard webcam lamp bulb battery hub tripod microphone controller monitor router"
).split()
MATERIALS = "bamboo cotton silk steel aluminum glass ceramic leather wood plastic silicone nylon linen".split()
USES = "travel home office gym kids men women sensitive skin daily use gifts outdoors studio the car".split()
DEPARTMENTS = "Beauty Electronics Home Sports Toys Office Garden Kitchen Health Pet Automotive Music".split()
SIZES = ("8 oz", "16 oz", "1.7 fl oz", "3.4 fl oz", "2-Pack", "4-Pack", "Pack of 6", "Large", "Mini", "XL")
RATINGS, RATING_WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.08, 0.05, 0.08, 0.15, 0.64])
ID_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
START_MS, SPAN_MS, GAP_MS = 1_420_070_400_000, 8 * 365 * 86_400_000, 20 * 86_400_000  # 2015..2023, ~20 days apart

TITLE_TEMPLATES = (
    "{brand} {adj} {noun} for {use}, {size}",
    "{adj} {material} {noun} by {brand} ({size})",
    "{brand} {noun} - {adj}, {material}, {color}",
    "{size} {adj} {noun} {topic}",
    "{noun} {topic} {brand} {adj} edition",
    "{brand} Professional {noun}: {adj} and {adj2} for {use}",
)
FEATURE_TEMPLATES = (
    "Made of {material} for a {adj} feel",
    "Ideal for {use}",
    "{adj} {topic} formula",
    "Includes {size}",
    "Designed by {brand} in {color}",
    "Works with every {noun}",
)
DESCRIPTION_TEMPLATES = (
    "The {brand} {noun} is a {adj} choice for {use}. Its {material} body and {adj2} finish last for years.",
    "Looking for a {adj} {noun}? This {topic} favourite from {brand} comes in {color} and {size}.",
    "{brand} makes {topic} products for {use}; this {noun} is {adj} and {adj2}.",
)
COLORS = "black white red blue green pink ivory navy rose charcoal teal amber".split()


def asins(index: np.ndarray, prefix: bytes) -> list[str]:
    """Stable, distinct, Amazon-looking ids from integer indices (base 36, fixed width after the prefix)."""
    width = 10 - len(prefix)
    digits = np.empty((len(index), width), dtype=np.uint8)
    rest = index.astype(np.int64).copy()
    for k in range(width - 1, -1, -1):
        digits[:, k] = ID_ALPHABET[rest % 36]
        rest //= 36
    return [prefix.decode() + row.tobytes().decode() for row in digits]


def user_ids(index: np.ndarray) -> list[str]:
    """28-character ids like the 2023 dumps', distinct per index (a scrambled index, base 36, padded)."""
    scrambled = (index.astype(np.int64) * 2_654_435_761 + 97) % (36**12)
    return [f"A{s}QZ{s[::-1]}AG" for s in asins(scrambled, b"")]


def topic_words(n_topics: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(department, sub-category, topic phrase) per topic; neighbours on the ring share a department."""
    out = []
    for t in range(n_topics):
        dept = DEPARTMENTS[(t * len(DEPARTMENTS)) // n_topics]
        sub = f"{ADJECTIVES[(t * 7) % len(ADJECTIVES)].title()} {NOUNS[(t * 13) % len(NOUNS)].title()}s"
        phrase = f"{ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]} {NOUNS[(t * 31 + 5) % len(NOUNS)]}"
        out.append((dept, sub, phrase))
    return out


def render_item(k: int, topic: tuple[str, str, str], rng: np.random.Generator) -> dict:
    dept, sub, phrase = topic
    words = {
        "brand": f"{NOUNS[int(rng.integers(len(NOUNS)))].title()}{ADJECTIVES[int(rng.integers(len(ADJECTIVES)))][:4]}",
        "adj": ADJECTIVES[int(rng.integers(len(ADJECTIVES)))],
        "adj2": ADJECTIVES[int(rng.integers(len(ADJECTIVES)))],
        "noun": phrase.split()[-1],
        "material": MATERIALS[int(rng.integers(len(MATERIALS)))],
        "use": USES[int(rng.integers(len(USES)))],
        "size": SIZES[int(rng.integers(len(SIZES)))],
        "color": COLORS[int(rng.integers(len(COLORS)))],
        "topic": phrase,
    }
    title = TITLE_TEMPLATES[k % len(TITLE_TEMPLATES)].format(**words)
    features = [FEATURE_TEMPLATES[int(j)].format(**words) for j in rng.permutation(len(FEATURE_TEMPLATES))]
    description = [DESCRIPTION_TEMPLATES[int(j)].format(**words) for j in rng.permutation(3)]
    return {
        "main_category": dept,
        "title": title[0].upper() + title[1:],
        "average_rating": round(float(rng.uniform(3, 5)), 1),
        "rating_number": int(rng.integers(1, 5000)),
        "features": features[: int(rng.integers(0, 6))],
        "description": description[: int(rng.integers(0, 3))],
        "price": round(float(rng.uniform(2, 200)), 2) if rng.random() < 0.7 else None,
        "images": [],
        "videos": [],
        "store": words["brand"] if rng.random() < 0.9 else None,
        "categories": [dept, sub],
        "details": {"Item Form": words["material"], "Color": words["color"]},
    }


def corpus(rng: np.random.Generator, n_chars: int = 2_000_000) -> str:
    """Review text to slice from: English-looking words, a few non-ASCII ones (the files are UTF-8), no quotes or
    backslashes (lines are written without an escaping pass)."""
    words = np.array(ADJECTIVES + NOUNS + MATERIALS + USES + COLORS + ["café", "déjà", "très", "größe", "👍"])
    picks = words[rng.integers(len(words), size=n_chars // 6)]
    text = " ".join(picks.tolist())
    return text[:n_chars]


class Catalogue:
    """Items by topic: ``topic[i]``, Zipf weight per item, and per-topic item lists for sampling."""

    def __init__(self, n_items: int, items_per_topic: int, zipf: float, rng: np.random.Generator):
        self.n_items = n_items
        self.n_topics = max(4, n_items // items_per_topic)
        self.topic = rng.integers(self.n_topics, size=n_items).astype(np.int32)
        rank = rng.permutation(n_items)
        self.weight = 1.0 / (rank + 10.0) ** zipf
        self.order = np.argsort(self.topic, kind="stable")  # items grouped by topic
        self.starts = np.searchsorted(self.topic[self.order], np.arange(self.n_topics + 1))
        sizes = np.diff(self.starts)
        if (sizes == 0).any():  # every topic holds at least one item
            empty = np.flatnonzero(sizes == 0)
            self.topic[rng.choice(n_items, size=len(empty), replace=False)] = empty
            self.order = np.argsort(self.topic, kind="stable")
            self.starts = np.searchsorted(self.topic[self.order], np.arange(self.n_topics + 1))
        w = self.weight[self.order]
        self.cum = np.cumsum(w)  # Zipf draws inside a topic: a uniform point of its slice of the cumulative weight
        self.cum_before = np.concatenate([[0.0], self.cum])
        self.round_robin = np.zeros(self.n_topics, dtype=np.int64)

    def draw(self, topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(topics)
        start, end = self.starts[topics], self.starts[topics + 1]
        zipf = rng.random(n) < 0.5
        lo, hi = self.cum_before[start], self.cum_before[end]
        u = lo + rng.random(n) * (hi - lo)
        pos = np.minimum(np.searchsorted(self.cum, u, side="right"), end - 1)
        # round robin: the k-th draw of topic t in this chunk takes the topic's (counter + k)-th item
        rr = np.flatnonzero(~zipf)
        t = topics[rr]
        by_topic = np.argsort(t, kind="stable")
        sorted_t = t[by_topic]
        first = np.searchsorted(sorted_t, sorted_t, side="left")
        occurrence = np.empty(len(rr), dtype=np.int64)
        occurrence[by_topic] = np.arange(len(rr)) - first
        size = end[rr] - start[rr]
        pos[rr] = start[rr] + (self.round_robin[t] + occurrence) % size
        np.add.at(self.round_robin, t, 1)
        return self.order[pos]


def write_meta(path: Path, cat: Catalogue, ids: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    topics = topic_words(cat.n_topics, np.random.default_rng(seed + 2))
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        lines = []
        for k in range(cat.n_items):
            record = render_item(k, topics[cat.topic[k]], rng)
            record["parent_asin"] = ids[k]
            record["bought_together"] = None
            lines.append(json.dumps(record, ensure_ascii=False))
            if len(lines) == 10_000:
                f.write("\n".join(lines) + "\n")
                lines = []
        if lines:
            f.write("\n".join(lines) + "\n")


def write_reviews(path: Path, cat: Catalogue, ids: list[str], n_reviews: int, seed: int, chunk_users: int) -> dict:
    """Users in chunks: each has a length (5 + a geometric tail, mean about 10), a drifting taste on the ring of
    topics, and timestamps that increase by ~20 days. A chunk's lines are shuffled before they are written."""
    rng = np.random.default_rng(seed)
    text = corpus(rng)
    written, users = 0, 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        while written < n_reviews:
            lengths = np.minimum(5 + rng.geometric(1 / 6, size=chunk_users) - 1, 200)
            lengths = lengths[np.cumsum(lengths) <= n_reviews - written + 200][: max(1, chunk_users)]
            n = int(lengths.sum())
            user = np.repeat(np.arange(users, users + len(lengths)), lengths)
            first = np.repeat(np.cumsum(lengths) - lengths, lengths)
            # taste: a random start on the ring plus a random walk of about one topic per review
            walk = rng.normal(0, 1.0, size=n)
            walk[first == np.arange(n)] = rng.uniform(0, cat.n_topics, size=len(lengths))
            taste = _segment_cumsum(walk, lengths)
            topics = np.rint(taste + rng.normal(0, 1.5, size=n)).astype(np.int64) % cat.n_topics
            items = cat.draw(topics, rng)
            ts = np.repeat(START_MS + rng.integers(0, SPAN_MS, size=len(lengths)), lengths) + _segment_cumsum(
                rng.integers(60_000, 2 * GAP_MS, size=n).astype(np.float64), lengths
            ).astype(np.int64)
            ratings = rng.choice(RATINGS, size=n, p=RATING_WEIGHTS)
            text_len = np.minimum(rng.lognormal(5.2, 1.0, size=n).astype(np.int64) + 1, 5000)
            offsets = rng.integers(0, len(text) - 5001, size=n)
            title_len = rng.integers(8, 60, size=n)
            votes = np.where(rng.random(n) < 0.3, rng.geometric(0.5, size=n) - 1, 0)
            verified = rng.random(n) < 0.85
            names = user_ids(np.arange(users, users + len(lengths)))
            lines = []
            for r in rng.permutation(n):
                o, tl = int(offsets[r]), int(text_len[r])
                item = ids[items[r]]
                lines.append(
                    f'{{"rating": {ratings[r]}, "title": "{text[o : o + int(title_len[r])].strip()}", '
                    f'"text": "{text[o : o + tl].strip()}", "images": [], "asin": "{item}", "parent_asin": "{item}", '
                    f'"user_id": "{names[user[r] - users]}", "timestamp": {ts[r]}, "helpful_vote": {votes[r]}, '
                    f'"verified_purchase": {"true" if verified[r] else "false"}}}'
                )
            f.write("\n".join(lines) + "\n")
            written += n
            users += len(lengths)
    return {"reviews": written, "users": users}


def _segment_cumsum(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at each segment (segments of ``lengths`` consecutive values)."""
    total = np.cumsum(values)
    ends = np.cumsum(lengths)
    before = np.concatenate([[0.0], total[ends[:-1] - 1]])
    return total - np.repeat(before, lengths)


def size_name(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("K", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def generate(out: Path, n_items: int, per_item: float = 10.0, seed: int = 0, category: str | None = None) -> dict:
    """Write (or find, when already complete) one category; returns its record (paths, counts, seconds)."""
    category = category or f"Scale_{size_name(n_items)}"
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / f"{category}.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if Path(record["reviews_path"]).is_file() and Path(record["meta_path"]).is_file():
            return record
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    cat = Catalogue(n_items, items_per_topic=200, zipf=0.9, rng=rng)
    ids = asins(np.arange(n_items) * 7_919 + 12_345, b"B0")
    reviews_path, meta_path = out / f"{category}.jsonl.gz", out / f"meta_{category}.jsonl.gz"
    write_meta(meta_path, cat, ids, seed)
    counts = write_reviews(reviews_path, cat, ids, int(per_item * n_items), seed, chunk_users=20_000)
    record = {
        "category": category,
        "items": n_items,
        "topics": cat.n_topics,
        **counts,
        "reviews_path": str(reviews_path),
        "meta_path": str(meta_path),
        "reviews_gz_bytes": reviews_path.stat().st_size,
        "meta_gz_bytes": meta_path.stat().st_size,
        "seed": seed,
        "generate_s": round(time.perf_counter() - start, 1),
    }
    record_path.write_text(json.dumps(record, indent=2))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000])
    parser.add_argument("--per-item", type=float, default=10.0, help="reviews per item (about)")
    parser.add_argument("--out", type=Path, default=Path("bench/data/scale"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for n in args.items:
        print(json.dumps(generate(args.out, n, args.per_item, args.seed)), flush=True)


if __name__ == "__main__":
    main()
