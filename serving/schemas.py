"""Request and response bodies of the API (pydantic); their limits are the API's documented limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_K = 1000
MAX_RECENT_ITEMS = 200
MAX_FILTER_ITEMS = 1000
MAX_FILTER_CATEGORIES = 100
MAX_EVENTS = 1000
MAX_TIMESTAMP = 10**11  # seconds; year 5138, far beyond any real event

Identifier = Annotated[str, Field(min_length=1, max_length=256)]
CategoryName = Annotated[str, Field(max_length=256)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(Strict):
    include_categories: list[CategoryName] = Field(
        default_factory=list, max_length=MAX_FILTER_CATEGORIES,
        description="only items of these categories (empty: every category)")
    exclude_categories: list[CategoryName] = Field(default_factory=list, max_length=MAX_FILTER_CATEGORIES,
                                                   description="never items of these categories")
    exclude_items: list[Identifier] = Field(default_factory=list, max_length=MAX_FILTER_ITEMS,
                                            description="never these item ids")


class RecommendRequest(Strict):
    user_id: Identifier | None = Field(None, description="a user of the training data; unknown users fall back")
    recent_items: list[Identifier] = Field(
        default_factory=list, max_length=MAX_RECENT_ITEMS,
        description="items the caller interacted with lately; the query of an unknown user")
    k: int = Field(10, ge=1, le=MAX_K, description="number of items to return")
    exclude_seen: bool = Field(True, description="leave out the user's training items and the recent items")
    filters: Filters = Field(default_factory=Filters)

    @model_validator(mode="after")
    def _user_or_items(self) -> RecommendRequest:
        if self.user_id is None and not self.recent_items:
            raise ValueError("give user_id or recent_items (or both)")
        return self


class RecommendedItem(BaseModel):
    item_id: str
    score: float = Field(description="inner product of query and item vectors; popularity count in that fallback")
    title: str
    category: str


class RecommendResponse(BaseModel):
    user_id: str | None
    user_known: bool
    fallback: Literal["recent_items", "popularity"] | None = Field(
        description="null for a known user; 'recent_items' or 'popularity' when the user is unknown")
    items: list[RecommendedItem]
    bundle_version: str
    model: str
    warnings: list[str]


class FeedbackEvent(Strict):
    user_id: Identifier
    item_id: Identifier
    kind: Literal["click", "purchase", "rating", "skip"]
    value: float | None = Field(None, allow_inf_nan=False, ge=-1e9, le=1e9,
                                description="the rating of a 'rating' event; optional otherwise")
    timestamp: int | None = Field(None, ge=0, le=MAX_TIMESTAMP, description="Unix seconds; default: arrival time")

    @model_validator(mode="after")
    def _rating_has_value(self) -> FeedbackEvent:
        if self.kind == "rating" and self.value is None:
            raise ValueError("a 'rating' event needs a value")
        return self


class FeedbackRequest(Strict):
    events: list[FeedbackEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class FeedbackResponse(BaseModel):
    accepted: int
    event_ids: list[int] = Field(description="row ids in the event log, committed before this response was sent")


class ReloadRequest(Strict):
    bundle: str | None = Field(None, min_length=1, max_length=4096,
                               description="bundle directory on the server; default: reload the current one")


class ReloadResponse(BaseModel):
    previous_version: str | None
    bundle_version: str
    bundle: str
    seconds: float


class ModelInfo(BaseModel):
    name: str
    kind: str
    bundle_version: str
    created_at: str
    n_items: int
    n_users: int
    embedding_dim: int
    index: dict
    metrics: dict[str, float]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ErrorResponse(BaseModel):
    detail: str | list
