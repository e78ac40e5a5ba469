"""``recpipe serve --checkpoint DIR``: an HTTP JSON API over a ``Recommender`` (FastAPI on uvicorn).

    GET  /health            status, catalogue size, known users
    POST /recommend         {"history": [ids or titles], "k": 10, "explain": false} or {"user_id": "42", ...}
    POST /recommend/batch   {"histories": [[...], ...]} or {"user_ids": [...]}, one forward pass for all
    POST /items             {"items": [{"item_id": "new-1", "text": "Title: ...", "title": "..."}]}: cold-start
                            items by their text alone (loads the text encoder on first use)

It starts from the checkpoint's saved item vectors and FAISS index (no catalogue encoding). It binds to 127.0.0.1
unless told otherwise, caps request bodies (``MAX_BODY_BYTES``) and validates every field (unknown fields are
errors). Answers: 200; 400 for an invalid request, 404 for unknown items or users, 413 for a body over the cap, 422
for a malformed one. Requests are served concurrently; adding items waits for the requests in flight and holds
new ones until it is done.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recpipe.errors import InvalidInputError, UnknownNameError, UserError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # 1 MiB: ~10,000 histories of 10 items, or 1,000 new items with long texts
MAX_HISTORY_ITEMS = 1000  # the user tower reads the last max_history of them
MAX_BATCH = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RankingOptions(Strict):
    """What both recommend endpoints take beside the users: how many items, and how."""

    k: int = Field(10, ge=1)
    exclude_history: bool = True
    explain: bool = False


class RecommendRequest(RankingOptions):
    history: list[str] | None = Field(None, min_length=1, max_length=MAX_HISTORY_ITEMS)
    user_id: str | None = Field(None, min_length=1, max_length=512)

    @model_validator(mode="after")
    def one_of_history_or_user(self):
        if (self.history is None) == (self.user_id is None):
            raise ValueError("give a history or a user_id (one of the two)")
        return self


class BatchRequest(RankingOptions):
    histories: list[list[str]] | None = Field(None, min_length=1, max_length=MAX_BATCH)
    user_ids: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def one_of_histories_or_users(self):
        if (self.histories is None) == (self.user_ids is None):
            raise ValueError("give histories or user_ids (one of the two)")
        if self.histories and any(not h or len(h) > MAX_HISTORY_ITEMS for h in self.histories):
            raise ValueError(f"every history needs 1 to {MAX_HISTORY_ITEMS} items")
        return self


class NewItem(Strict):
    item_id: str = Field(min_length=1, max_length=512)
    text: str = Field(min_length=1, max_length=10_000)
    title: str | None = Field(None, max_length=512)


class AddItemsRequest(Strict):
    items: list[NewItem] = Field(min_length=1, max_length=MAX_BATCH)


class ReadWriteLock:
    """Many readers at once, or one writer: recommendations run concurrently, adding items runs alone."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers, self._writer = 0, False

    @contextmanager
    def read(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413, whether announced by Content-Length or not."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse({"detail": f"request body over {self.max_bytes:,} bytes"}, status_code=413)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await too_large(scope, receive, send)


def create_app(recommender, max_k: int = 1000, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The API over a loaded ``recpipe.recommender.Recommender``."""
    app = FastAPI(title="recpipe", description="Recommendations from a recpipe checkpoint.", version="1")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    lock = ReadWriteLock()
    rec = recommender

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return JSONResponse({"detail": str(exc)}, status_code=404 if isinstance(exc, UnknownNameError) else 400)

    def ranking(req: RankingOptions) -> dict:
        """The recommender's keyword arguments for the request's options (``k`` within the server's limit)."""
        if req.k > max_k:
            raise InvalidInputError(f"k must be <= {max_k} (the server's --max_k)")
        return {"k": req.k, "exclude": "history" if req.exclude_history else None, "explain": req.explain}

    @app.get("/health")
    def health():
        with lock.read():
            return {
                "status": "ok",
                "checkpoint": str(rec.checkpoint_dir),
                "items": rec.index.size,
                "known_users": len(rec.users),
                "similarity": rec.model_config["similarity"],
                "can_add_items": bool(rec.model_config["use_text"]),
            }

    @app.post("/recommend")
    def recommend(req: RecommendRequest):
        options = ranking(req)
        with lock.read():
            items = rec.recommend(req.history, req.user_id, **options)
        return {"items": items}

    @app.post("/recommend/batch")
    def recommend_batch(req: BatchRequest):
        options = ranking(req)
        with lock.read():
            results = rec.recommend_batch(req.histories, req.user_ids, **options)
        return {"results": results}

    @app.post("/items")
    def add_items(req: AddItemsRequest):
        titles = [i.title or i.item_id for i in req.items]
        with lock.write():
            rec.add_items([i.item_id for i in req.items], [i.text for i in req.items], titles)
            return {"added": len(req.items), "items": rec.index.size}

    return app


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, max_k: int = 1000, revision=None) -> None:
    """Load ``checkpoint`` and serve it until interrupted."""
    import uvicorn

    from recpipe.recommender import Recommender

    start = time.perf_counter()
    rec = Recommender.from_pretrained(checkpoint, revision=revision)
    print(
        f"recpipe serve: {checkpoint} ({rec.index.size:,} items, {len(rec.users):,} known users) loaded in "
        f"{time.perf_counter() - start:.1f} s; http://{host}:{port}/docs describes the API",
        flush=True,
    )
    uvicorn.run(create_app(rec, max_k=max_k), host=host, port=port, log_level="warning")
