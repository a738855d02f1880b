"""The `llm` backend: any OpenAI-compatible chat-completions endpoint (Gemini offers one).

- POST {base_url}/chat/completions with {"model", "messages", "temperature": 0}; the API key comes
  from the environment variable the config names and goes only into the Authorization header. It is
  never logged, and any text that leaves this module (errors, replies: parsed, raw or cached) has it
  redacted; a reply is redacted as soon as it arrives, so an endpoint that echoes the key cannot put
  it into the mentions, the statuses or the cache.
- Batched: one request carries up to `batch_size` captions as a JSON list; the reply must be one JSON
  object {"results": [{"id": ..., ...}, ...]} (a ```json fence around it is tolerated, nothing else).
- On-disk cache: one file per request, named by the SHA-256 of (model, messages); a second run with
  the same prompts sends no request. Only replies that parsed are cached.
- Retries with exponential backoff (and Retry-After when the server gives one) on 429, 5xx,
  timeouts and dropped connections; other 4xx fail at once.
- A reply that does not parse (or lacks an id) leaves those captions with status "unparsed" and the
  raw reply recorded; it is not an error of the run.
- Prediction: the prompt asks for a country per caption, not for a confidence (a model's stated
  confidence is not a calibrated probability). When a result carries one anyway ("confidence", a
  number in [0, 1]) it is kept; otherwise the confidence is NaN, never a made-up 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

from encoderlens.secrets import redact

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)

EXTRACT_PROMPT = (
    "You extract place names from image captions. For each caption, list every geographic place it "
    "names (cities, towns, regions, countries), exactly as written in the caption. Answer with one "
    'JSON object and nothing else: {"results": [{"id": <caption id>, "places": [<string>, ...]}]}, '
    "one entry per caption, in the order given.")
PREDICT_PROMPT = (
    "For each image caption, decide which country the photo was taken in. Each caption comes with "
    "candidate places from GeoNames (name, ISO 3166-1 alpha-2 country code, population); use them as "
    "guidance. Answer with one JSON object and nothing else: "
    '{"results": [{"id": <caption id>, "country": <ISO alpha-2 code, or "Unknown">}]}.')


class LLMError(RuntimeError):
    pass


class ChatClient:
    def __init__(self, base_url: str, model: str, api_key_env: str | None = None,
                 cache_dir=None, timeout: float = 60.0, max_retries: int = 5, backoff: float = 1.0,
                 max_backoff: float = 60.0, session=None):
        import requests

        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.api_key:
            raise LLMError(f"the llm backend needs an API key in the environment variable {api_key_env}")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.session = session or requests.Session()
        self.requests_sent = 0

    def _clean(self, text: str) -> str:
        return redact(str(text), [self.api_key])

    def cache_key(self, messages: list[dict]) -> str:
        payload = json.dumps({"model": self.model, "messages": messages}, sort_keys=True,
                             ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _cached(self, key: str) -> str | None:
        if self.cache_dir is None or not (self.cache_dir / f"{key}.json").is_file():
            return None
        return json.loads((self.cache_dir / f"{key}.json").read_text(encoding="utf-8"))["reply"]

    def _store(self, key: str, messages, reply: str) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        target = self.cache_dir / f"{key}.json"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps({"model": self.model, "messages": messages, "reply": reply},
                                  ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, target)

    def complete(self, messages: list[dict], parse) -> tuple[object | None, str, bool]:
        """(parsed reply or None, raw reply text, from cache). `parse` raises ValueError on a reply
        that does not parse; such replies are returned raw and not cached."""
        key = self.cache_key(messages)
        cached = self._cached(key)
        if cached is not None:
            cached = self._clean(cached)  # a cache written before replies were redacted
            return parse(cached), cached, True
        # an endpoint that echoes the request (or misbehaves) can put the key in the reply itself:
        # redacted before it is parsed, so it reaches neither the mentions, the statuses nor the cache
        reply = self._clean(self._post(messages))
        try:
            parsed = parse(reply)
        except ValueError as error:
            log.warning("llm reply did not parse (%s); recorded raw", self._clean(error))
            return None, reply, False
        self._store(key, messages, reply)
        return parsed, reply, False

    def _post(self, messages: list[dict]) -> str:
        import requests

        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = {"model": self.model, "messages": messages, "temperature": 0}
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff, self.backoff * 2 ** attempt)
            try:
                self.requests_sent += 1
                response = self.session.post(self.url, json=body, headers=headers, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as error:
                problem = f"{type(error).__name__}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        raise LLMError(f"{self.url}: not a chat-completions response: "
                                       f"{self._clean(response.text[:300])}") from None
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRY_STATUS:
                    raise LLMError(f"{self.url}: {problem}: {self._clean(response.text[:300])}")
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait = min(self.max_backoff, float(retry_after))
            if attempt == self.max_retries:
                raise LLMError(f"{self.url}: {problem} after {self.max_retries + 1} attempts")
            log.info("llm request: %s; retrying in %.1f s", problem, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")


def parse_results(reply: str, field: str, kind) -> dict[str, object]:
    """Strict parse of {"results": [{"id", field}]} -> {id: value}; ValueError when it is not that."""
    return {key: item[field] for key, item in parse_items(reply, field, kind).items()}


def parse_items(reply: str, field: str, kind) -> dict[str, dict]:
    """Strict parse of {"results": [{"id", field, ...}]} -> {id: the result object}."""
    text = reply.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError('expected an object with a "results" list')
    values = {}
    for item in data["results"]:
        if not isinstance(item, dict) or "id" not in item or not isinstance(item.get(field), kind):
            raise ValueError(f'each result needs "id" and a {kind.__name__} "{field}": {item!r}')
        values[str(item["id"])] = item
    return values


def reply_confidence(item: dict) -> float:
    """The result's "confidence" when it is a number in [0, 1], else NaN."""
    value = item.get("confidence")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return float("nan")


def _places_list(values: dict) -> dict:
    for key, places in values.items():
        if not all(isinstance(p, str) for p in places):
            raise ValueError(f"places of {key} are not all strings")
    return values


def llm_extract(client: ChatClient, ids, texts, batch_size: int = 20):
    """Place mentions by the LLM: (mention rows, status rows). Mentions keep the LLM's spelling;
    start/end locate it in the text when it occurs there verbatim, else -1."""
    mentions, statuses = [], []
    ids, texts = [str(i) for i in ids], [str(t) for t in texts]
    for begin in range(0, len(ids), batch_size):
        batch = list(zip(ids[begin:begin + batch_size], texts[begin:begin + batch_size]))
        messages = [{"role": "system", "content": EXTRACT_PROMPT},
                    {"role": "user", "content": json.dumps([{"id": i, "caption": t} for i, t in batch],
                                                           ensure_ascii=False)}]
        parsed, raw, _ = client.complete(
            messages, lambda reply: _places_list(parse_results(reply, "places", list)))
        for image_id, text in batch:
            if parsed is None or image_id not in parsed:
                statuses.append((image_id, "unparsed" if parsed is None else "missing", raw))
                continue
            statuses.append((image_id, "ok", ""))
            for place in dict.fromkeys(p.strip() for p in parsed[image_id] if p.strip()):
                start = text.find(place)
                mentions.append((image_id, place, start, start + len(place) if start >= 0 else -1, "llm"))
    return mentions, statuses


def llm_predict(client: ChatClient, ids, texts, candidates, batch_size: int = 20, top: int = 5):
    """Countries by the LLM with the GeoNames candidates as guidance: a table (image_id,
    country_pred, confidence) of the captions it answered, and status rows."""
    import pandas as pd

    by_id = {image_id: group for image_id, group in candidates.groupby("image_id")}
    result, statuses = {}, []
    ids, texts = [str(i) for i in ids], [str(t) for t in texts]
    for begin in range(0, len(ids), batch_size):
        batch = list(zip(ids[begin:begin + batch_size], texts[begin:begin + batch_size]))
        items = []
        for image_id, text in batch:
            group = by_id.get(image_id)
            guidance = [] if group is None else [
                {"mention": m, "name": n, "country": c, "population": int(p)}
                for m, n, c, p in group[group["rank"] <= top][["mention", "name", "cc", "population"]]
                .itertuples(index=False)]
            items.append({"id": image_id, "caption": text, "candidates": guidance})
        messages = [{"role": "system", "content": PREDICT_PROMPT},
                    {"role": "user", "content": json.dumps(items, ensure_ascii=False)}]
        parsed, raw, _ = client.complete(messages, lambda reply: parse_items(reply, "country", str))
        for image_id, _ in batch:
            if parsed is None or image_id not in parsed:
                statuses.append((image_id, "unparsed" if parsed is None else "missing", raw))
                continue
            code = parsed[image_id]["country"].strip()
            result[image_id] = (code.upper() if len(code) == 2 else "Unknown",
                                reply_confidence(parsed[image_id]))
            statuses.append((image_id, "ok", ""))
    predicted = pd.DataFrame({"image_id": pd.Series(list(result), dtype=str),
                              "country_pred": pd.Series([c for c, _ in result.values()], dtype=object),
                              "confidence": pd.Series([p for _, p in result.values()], dtype=float)})
    return predicted, statuses
