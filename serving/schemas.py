"""Request and response bodies of the API (pydantic); their limits are the API's documented limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from serving.guards import is_valid_text

MAX_K = 1000
MAX_RECENT_ITEMS = 200
MAX_FILTER_ITEMS = 1000
MAX_FILTER_CATEGORIES = 100
MAX_EVENTS = 1000
MAX_TIMESTAMP = 10**11  # seconds; year 5138, far beyond any real event
MAX_PREFERENCES = 5  # Mender reads up to five stated preferences (Paischer et al., 2024)
MAX_PREFERENCE_CHARS = 500
MAX_DEMOGRAPHICS = 64
MAX_TASTES = 100
MAX_COMPARISONS = 100
TRAIT_BOUND = 1e4  # far beyond any questionnaire scale; keeps the ranker's scores finite



def _plain_text(value: str) -> str:
    # A lone surrogate ("\ud800") parses from JSON but cannot be written back as UTF-8 (a reply that
    # echoes it, a log, the event log); a NUL breaks C-level consumers of the ids. Both are 422.
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    if not is_valid_text(value):
        raise ValueError("must be valid Unicode text (a lone surrogate such as \\ud800 is not)")
    return value


PlainText = AfterValidator(_plain_text)
Identifier = Annotated[str, Field(min_length=1, max_length=256), PlainText]
CategoryName = Annotated[str, Field(max_length=256), PlainText]


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


TraitScore = Annotated[float, Field(allow_inf_nan=False, ge=-TRAIT_BOUND, le=TRAIT_BOUND)] | None
# strict: a JSON string never becomes the number (a 300-digit string must be a 422, not a float).
DemographicValue = Annotated[str, Field(max_length=256), PlainText] | Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=-1e12, le=1e12)] | None


class Traits(Strict):
    """Big-Five scores on the scale the model was trained on (GET /v1/models shows the trained names);
    a trait left out is unknown, as the model treats a missing questionnaire answer."""

    openness: TraitScore = None
    conscientiousness: TraitScore = None
    extraversion: TraitScore = None
    agreeableness: TraitScore = None
    neuroticism: TraitScore = None


class ProfileQuery(Strict):
    """A user the model never saw, described by what the personality ranker reads."""

    traits: Traits = Field(default_factory=Traits)
    demographics: dict[Annotated[str, Field(min_length=1, max_length=64), PlainText], DemographicValue] = Field(
        default_factory=dict, max_length=MAX_DEMOGRAPHICS,
        description="demographic field -> raw value (a category, or a number for a binned field); an unknown "
                    "field is a 422, a value never seen in training carries no signal (warning)")
    tastes: list[Annotated[str, Field(min_length=1, max_length=256), PlainText]] = Field(
        default_factory=list, max_length=MAX_TASTES,
        description="stated tastes (the training data's taste tokens); unseen tokens are ignored with a warning")


Preference = Annotated[str, Field(min_length=1, max_length=MAX_PREFERENCE_CHARS), PlainText]


class Comparison(Strict):
    """One answer to "which of these two?": `preferred` was chosen over `over`."""

    preferred: Identifier
    over: Identifier

    @model_validator(mode="after")
    def _two_items(self) -> Comparison:
        if self.preferred == self.over:
            raise ValueError("preferred and over must be two different items")
        return self


class RecommendRequest(Strict):
    user_id: Identifier | None = Field(None, description="a user of the training data; unknown users fall back")
    recent_items: list[Identifier] = Field(
        default_factory=list, max_length=MAX_RECENT_ITEMS,
        description="items the caller interacted with lately, oldest first; the query of an unknown user")
    profile: ProfileQuery | None = Field(
        None, description="traits, demographics and tastes of a user the model never saw; read by bundles with a "
                          "ranker graph (personality models), after a known user_id and before recent_items")
    preferences: list[Preference] = Field(
        default_factory=list, max_length=MAX_PREFERENCES,
        description="stated preferences in natural language ('looks for lightweight gear'); read by Mender "
                    "bundles together with the history; other bundles ignore them with a warning")
    comparisons: Annotated[list[Comparison], Field(min_length=1, max_length=MAX_COMPARISONS)] | None = Field(
        None, description="pairwise answers of a user the model never saw; bundles of a pluralistic model place "
                          "the user among their taste prototypes from them (GET /v1/models says how many to ask "
                          "for), after a known user_id and a profile, before recent_items")
    k: int = Field(10, ge=1, le=MAX_K, description="number of items to return")
    exclude_seen: bool = Field(True, description="leave out the user's training items and the recent items")
    filters: Filters = Field(default_factory=Filters)

    @model_validator(mode="after")
    def _someone(self) -> RecommendRequest:
        if (self.user_id is None and not self.recent_items and self.profile is None and not self.preferences
                and self.comparisons is None):
            raise ValueError("give user_id, recent_items, profile, preferences or comparisons (or several)")
        return self


class RecommendedItem(BaseModel):
    item_id: str
    score: float = Field(description="by scorer: embedding: inner product of query and item vectors; ranker: the "
                                     "personality model's click logit or predicted rating; generative: the "
                                     "log-probability of the item's semantic ID; popularity: training count")
    title: str
    category: str


class RecommendResponse(BaseModel):
    user_id: str | None
    user_known: bool
    fallback: Literal["profile", "comparisons", "recent_items", "preferences", "popularity"] | None = Field(
        description="who the query was taken to be: null for a known user; else the first that applies of "
                    "'profile' (bundle with a ranker graph), 'comparisons' (pluralistic bundle), 'recent_items', 'preferences' (Mender bundle, no "
                    "history) and 'popularity' (nothing to go on)")
    scorer: Literal["embedding", "ranker", "generative", "popularity"] = Field(
        description="what ranked the items: the embedding towers + faiss, the personality ranker graph, "
                    "generative beam search over semantic IDs (TIGER/Mender bundles), or training popularity")
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
                               description="a bundle directory inside the server's bundle root (`--bundle-root`): "
                                           "its name, or a path that resolves inside the root; default: reload the "
                                           "current one")


class ReloadResponse(BaseModel):
    previous_version: str | None
    bundle_version: str
    bundle: str = Field(description="the bundle now served, relative to the bundle root")
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
    query_kinds: list[Literal["user_id", "recent_items", "profile", "preferences", "comparisons"]] = Field(
        description="what POST /v1/recommend reads with this bundle; other fields are ignored with a warning")
    profile: dict | None = Field(None, description="with 'profile': the trait names and the scale they were "
                                                   "trained on (mean, std), the demographic fields (values or "
                                                   "numeric bins) and the tastes the ranker knows")
    generative: dict | None = Field(None, description="generative bundles: variant, beam size, history and "
                                                      "preference limits")
    recommended_comparisons: int | None = Field(
        None, description="with 'comparisons': how many pairwise answers a new user should give to be placed "
                          "among the taste prototypes (fewer work, less well)")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ErrorResponse(BaseModel):
    detail: str | list
