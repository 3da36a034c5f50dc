"""Preference extraction with a large language model behind any OpenAI-compatible chat endpoint.

    extractor = LLMExtractor(base_url="http://localhost:8000/v1", model="llama-3-8b-instruct")
    extractor.extract(contexts)   # up to five preference sentences per context

The prompt follows Paischer et al. (2024): from the user's items and reviews, write up to five
search-style preferences covering likes and dislikes, about item properties, never brands or
prices, answered as JSON. Each answer is validated; a malformed one (not JSON, wrong shape,
non-text entries) is retried like a timeout or a 5xx/429, and after `max_retries` retries it
raises `LLMError` naming the endpoint, the model and what was wrong. Answers are cached on disk
as JSON by a hash of (model, messages, temperature), so a rerun asks only what is new.

The API key comes from `api_key` or the environment variable `api_key_env` (default
OPENAI_API_KEY); the base URL from `base_url` or OPENAI_BASE_URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from recsys.errors import UserInputError
from recsys.preferences.extraction import MAX_PREFERENCES, PreferenceContext

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("artifacts/cache/llm_preferences")
SYSTEM_PROMPT = ("You are an expert shopping assistant. You read what a customer bought and wrote about it, "
                 "and distil the customer's preferences.")
INSTRUCTION = (
    "Write up to {n} preferences of this user that a search engine could use to find the next items the "
    "user will want. Cover both what the user likes and what the user dislikes; start every dislike with "
    "'Avoid'. Each preference is one short search-style phrase about properties of items (such as weight, "
    "scent, tone, style or materials). Never mention brand names or prices. Answer with JSON only, in the "
    'form {{"preferences": ["...", "..."]}}.')
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


class LLMError(UserInputError):
    """The endpoint could not give a usable answer (unreachable, refused, or malformed after retries)."""


def build_messages(context: PreferenceContext, max_preferences: int = MAX_PREFERENCES) -> list[dict[str, str]]:
    """The chat messages for one context: its items (oldest first) with reviews, then the instruction."""
    lines = ["Items this user interacted with, oldest first:"]
    for number, item in enumerate(context.items, start=1):
        lines.append(f"{number}. Title: {item.title}")
        if item.text:
            lines.append(f"   Description: {item.text}")
        if item.review:
            stars = f" ({item.rating:g} of 5 stars)" if item.rating is not None else ""
            lines.append(f"   Review{stars}: {item.review}")
    lines += ["", INSTRUCTION.format(n=max_preferences)]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


class MalformedAnswer(ValueError):
    """An answer that is not the JSON the instruction asks for (the message says how)."""


def parse_answer(content: str, max_preferences: int = MAX_PREFERENCES) -> list[str]:
    """The preference list of an answer: {"preferences": [...]} or a bare list, optionally in a ``` fence."""
    if not isinstance(content, str) or not content.strip():
        raise MalformedAnswer("the answer is empty")
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedAnswer(f"the answer is not JSON ({error.msg} at character {error.pos})") from None
    if isinstance(payload, dict):
        if "preferences" not in payload:
            raise MalformedAnswer(f"the JSON object has no 'preferences' key (keys: {sorted(payload)[:5]})")
        payload = payload["preferences"]
    if not isinstance(payload, list):
        raise MalformedAnswer(f"'preferences' must be a list of strings, got {type(payload).__name__}")
    preferences = []
    for position, entry in enumerate(payload):
        if not isinstance(entry, str):
            raise MalformedAnswer(f"preference {position} is a {type(entry).__name__}, not a string")
        entry = " ".join(entry.split())
        if entry and entry not in preferences:
            preferences.append(entry)
    if len(preferences) > max_preferences:
        log.info("the answer lists %d preferences; keeping the first %d", len(preferences), max_preferences)
    return preferences[:max_preferences]


class LLMExtractor:
    """Preferences from an OpenAI-compatible `POST {base_url}/chat/completions` endpoint."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0, max_retries: int = 2,
                 backoff_s: float = 1.0, temperature: float = 0.0, max_tokens: int = 300,
                 cache_dir: Path | str | None = DEFAULT_CACHE_DIR, max_preferences: int = MAX_PREFERENCES,
                 name: str = "llm"):
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise UserInputError("LLM extractor: give base_url (or set OPENAI_BASE_URL), e.g. http://localhost:8000/v1")
        if not model:
            raise UserInputError("LLM extractor: give the model name the endpoint serves")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise UserInputError("LLM extractor: timeout_s must be > 0, max_retries and backoff_s >= 0")
        if not 1 <= max_preferences <= MAX_PREFERENCES:
            raise UserInputError(f"LLM extractor: max_preferences must be 1..{MAX_PREFERENCES}")
        self.model, self.base_url = model, base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.timeout_s, self.max_retries, self.backoff_s = float(timeout_s), int(max_retries), float(backoff_s)
        self.temperature, self.max_tokens, self.max_preferences = float(temperature), int(max_tokens), max_preferences
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.name = name
        self.requests = 0  # HTTP requests sent (retries included)
        self._client = None

    # -- HTTP ---------------------------------------------------------------------------------
    def _http(self):
        if self._client is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _where(self) -> str:
        return f"LLM endpoint {self.base_url} (model {self.model})"

    def _ask_once(self, messages: list[dict[str, str]]) -> str:
        """One request; returns the message content or raises (_Transient for what a retry may fix)."""
        import httpx

        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        self.requests += 1
        try:
            response = self._http().post(f"{self.base_url}/chat/completions", json=body)
        except httpx.TimeoutException:
            raise _Transient(f"no answer within {self.timeout_s:g} s") from None
        except httpx.TransportError as error:
            raise _Transient(f"cannot connect ({type(error).__name__}: {error})") from None
        if response.status_code in (401, 403):
            raise LLMError(f"{self._where()} refused the request (HTTP {response.status_code}); check the API key "
                           "(api_key or the environment variable named by api_key_env)")
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            raise LLMError(f"{self._where()} answered HTTP {response.status_code}: {response.text[:300]}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Transient(f"the response is not a chat completion: {response.text[:200]!r}") from None
        return content

    def ask(self, messages: list[dict[str, str]]) -> list[str]:
        """Preferences for one prompt: from the cache, else from the endpoint with retries."""
        key = hashlib.sha256(json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature},
                                        sort_keys=True).encode()).hexdigest()
        cached = self._cached(key)
        if cached is not None:
            return cached
        problems = []
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                content = self._ask_once(messages)
                preferences = parse_answer(content, self.max_preferences)
            except _Transient as error:
                problems.append(str(error))
            except MalformedAnswer as error:
                problems.append(f"malformed answer: {error}; it began {content[:120]!r}")
            else:
                self._store(key, preferences)
                return preferences
            log.warning("%s, attempt %d of %d: %s", self._where(), attempt + 1, self.max_retries + 1, problems[-1])
        raise LLMError(f"{self._where()} gave no usable answer after {self.max_retries + 1} attempts; "
                       f"last problem: {problems[-1]}")

    def extract(self, contexts: Sequence[PreferenceContext]) -> list[list[str]]:
        # A context with no items has nothing to distil: no request.
        return [self.ask(build_messages(c, self.max_preferences)) if c.items else [] for c in contexts]

    # -- cache ----------------------------------------------------------------------------------
    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cached(self, key: str) -> list[str] | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text())
            return parse_answer(json.dumps(payload), self.max_preferences)
        except (OSError, MalformedAnswer, ValueError):
            log.warning("ignoring unreadable cached answer %s", path)
            return None

    def _store(self, key: str, preferences: list[str]) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=".answer", suffix=".partial")
        with os.fdopen(handle, "w") as out:
            json.dump({"preferences": preferences}, out)
        os.replace(partial, path)


class _Transient(Exception):
    """A failure a retry may fix (timeout, connection, 429/5xx, a response that is not a completion)."""
