"""An LLM endpoint that echoes the API key in its reply (issue #21 item 9): the key reaches neither
mentions.parquet, extract_status.parquet nor the reply cache. Before the fix a reply that parsed was
used and cached as received, so an echoed key became a "place" in mentions.parquet and sat in the
cache file."""

import json

import pandas as pd

from encoderlens.captions.job import extract_job
from encoderlens.captions.llm import llm_extract
from encoderlens.secrets import REDACTED
from test_captions_llm import IDS, KEY, TEXTS, client, stub  # noqa: F401 (fixtures)


def echoing_reply(body):
    """A misbehaving endpoint: every caption's places include the key it was sent (as an echoing proxy
    would return the Authorization header), and the note quotes it once more."""
    items = json.loads(body["messages"][1]["content"])
    return json.dumps({"note": f"Authorization: Bearer {KEY}",
                       "results": [{"id": item["id"], "places": ["Windhoek", KEY]} for item in items]})


def everything_written(folder):
    return "".join(path.read_text(errors="replace") for path in folder.rglob("*") if path.is_file())


def test_an_echoed_key_is_redacted_before_the_mentions_and_the_cache(stub, tmp_path, monkeypatch):  # noqa: F811
    stub.default = echoing_reply
    monkeypatch.setenv("STUB_KEY", KEY)
    translated = tmp_path / "translated.parquet"
    pd.DataFrame({"image_id": IDS, "text": TEXTS}).to_parquet(translated)
    llm = {"base_url": stub.url, "model": "stub-model", "api_key_env": "STUB_KEY", "batch_size": 5,
           "max_retries": 0}
    extract_job(translated, None, tmp_path / "out" / "mentions.parquet", tmp_path / "out" / "status.parquet",
                {"backend": "llm"}, llm, cache_dir=tmp_path / "cache")
    assert stub.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # the endpoint got it
    mentions = pd.read_parquet(tmp_path / "out" / "mentions.parquet")
    assert sorted(mentions["mention"]) == sorted(["Windhoek", REDACTED] * 3)
    assert KEY not in mentions.to_csv()
    assert KEY not in pd.read_parquet(tmp_path / "out" / "status.parquet").to_csv()
    cached = list((tmp_path / "cache").glob("*.json"))
    assert len(cached) == 1 and KEY not in everything_written(tmp_path / "cache")
    assert f"Bearer {REDACTED}" in json.loads(cached[0].read_text())["reply"]


def test_a_cache_written_before_the_fix_is_redacted_when_read(stub, client, tmp_path):  # noqa: F811
    stub.default = echoing_reply
    key = client.cache_key([{"role": "system", "content": "x"}])
    (tmp_path / "cache").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache" / f"{key}.json").write_text(json.dumps({"reply": echoing_reply(
        {"messages": [{}, {"content": json.dumps([{"id": "1", "caption": "c"}])}]})}))
    parsed, raw, from_cache = client.complete([{"role": "system", "content": "x"}], json.loads)
    assert from_cache and KEY not in raw and parsed["results"][0]["places"] == ["Windhoek", REDACTED]
    mentions, _ = llm_extract(client, ["1"], ["c"])
    assert all(KEY not in row[1] for row in mentions)
