"""The llm backend against a local chat-completions stub on 127.0.0.1: well-formed replies,
malformed JSON, 429 then success, a timeout, the on-disk cache and the API key kept out of logs."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from encoderlens.captions.llm import ChatClient, LLMError, llm_extract, llm_predict

KEY = "sk-test-secret-123"


class ChatStub:
    """Answers POST /v1/chat/completions with queued (status, content, delay) replies; when the
    queue is empty, with `default(request_body)`."""

    def __init__(self):
        self.queue, self.requests = [], []
        self.default = None

    def reply(self, body):
        if self.queue:
            return self.queue.pop(0)
        return 200, self.default(body), 0.0


@pytest.fixture
def stub():
    state = ChatStub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, content, delay = state.reply(body)
            time.sleep(delay)
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}
                                 if status == 200 else {"error": content}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def places_reply(body):
    items = json.loads(body["messages"][1]["content"])
    known = {"Windhoek": ["Windhoek"], "Paris": ["Paris", "France"]}
    return json.dumps({"results": [{"id": item["id"], "places": next(
        (v for k, v in known.items() if k in item["caption"]), [])} for item in items]})


@pytest.fixture
def client(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)
    return ChatClient(stub.url, "stub-model", "STUB_KEY", cache_dir=tmp_path / "cache", timeout=0.5,
                      max_retries=2, backoff=0.01)


IDS = ["1", "2", "NA"]
TEXTS = ["A house in Windhoek", "A car near Paris, France", "A church"]


def test_a_well_formed_reply_gives_mentions_and_the_key_goes_only_in_the_header(stub, client):
    stub.default = places_reply
    mentions, statuses = llm_extract(client, IDS, TEXTS, batch_size=2)
    assert [m[:4] for m in mentions] == [("1", "Windhoek", 11, 19), ("2", "Paris", 11, 16),
                                         ("2", "France", 18, 24)]
    assert [s[1] for s in statuses] == ["ok", "ok", "ok"]
    assert len(stub.requests) == 2  # batches of 2
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "stub-model" and request["body"]["temperature"] == 0
    assert KEY not in json.dumps(request["body"])


def test_the_cache_makes_a_second_run_send_no_request(stub, client, tmp_path):
    stub.default = places_reply
    first = llm_extract(client, IDS, TEXTS, batch_size=5)
    assert len(stub.requests) == 1
    again = ChatClient(stub.url, "stub-model", "STUB_KEY", cache_dir=tmp_path / "cache")
    assert llm_extract(again, IDS, TEXTS, batch_size=5) == first
    assert len(stub.requests) == 1 and again.requests_sent == 0
    other_model = ChatClient(stub.url, "other-model", "STUB_KEY", cache_dir=tmp_path / "cache")
    llm_extract(other_model, IDS, TEXTS, batch_size=5)
    assert len(stub.requests) == 2  # the cache key covers the model


def test_malformed_json_is_recorded_raw_and_not_cached(stub, client):
    stub.queue.append((200, '{"results": [{"id": "1", "places": ["Windhoek"]', 0.0))
    mentions, statuses = llm_extract(client, IDS, TEXTS, batch_size=5)
    assert mentions == []
    assert [s[1] for s in statuses] == ["unparsed"] * 3
    assert statuses[0][2] == '{"results": [{"id": "1", "places": ["Windhoek"]'
    stub.default = places_reply
    mentions, statuses = llm_extract(client, IDS, TEXTS, batch_size=5)  # not served from the cache
    assert len(stub.requests) == 2 and len(mentions) == 3
    stub.queue.append((200, json.dumps({"results": [{"id": "1", "places": "Windhoek"}]}), 0.0))
    client.cache_dir = None
    assert [s[1] for s in llm_extract(client, IDS[:1], TEXTS[:1])[1]] == ["unparsed"]  # wrong type


def test_429_then_success_is_retried(stub, client):
    stub.default = places_reply
    stub.queue += [(429, "slow down", 0.0), (503, "busy", 0.0)]
    mentions, statuses = llm_extract(client, IDS, TEXTS, batch_size=5)
    assert len(stub.requests) == 3 and len(mentions) == 3


def test_a_timeout_is_retried_then_reported(stub, client):
    stub.default = places_reply
    stub.queue.append((200, places_reply({"messages": [{}, {"content": "[]"}]}), 1.5))  # > timeout 0.5
    mentions, _ = llm_extract(client, IDS, TEXTS, batch_size=5)
    assert len(stub.requests) == 2 and len(mentions) == 3
    stub.queue += [(500, "down", 0.0)] * 3
    client.cache_dir = None
    with pytest.raises(LLMError, match=r"HTTP 500 after 3 attempts"):
        llm_extract(client, IDS, TEXTS, batch_size=5)


def test_client_errors_fail_at_once_with_the_key_redacted(stub, client, caplog):
    stub.queue.append((401, f"bad key {KEY}", 0.0))
    with caplog.at_level(logging.DEBUG), pytest.raises(LLMError) as error:
        llm_extract(client, IDS, TEXTS)
    assert len(stub.requests) == 1
    assert "HTTP 401" in str(error.value) and KEY not in str(error.value)
    assert KEY not in caplog.text


def test_a_missing_key_is_named_without_a_value(monkeypatch, stub):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(LLMError, match="environment variable NO_SUCH_KEY"):
        ChatClient(stub.url, "m", "NO_SUCH_KEY")


def test_llm_prediction_gets_the_candidates_as_guidance(stub, client):
    def reply(body):
        items = json.loads(body["messages"][1]["content"])
        return json.dumps({"results": [{"id": i["id"], "country": i["candidates"][0]["country"]
                                        if i["candidates"] else "Unknown"} for i in items]})

    stub.default = reply
    candidates = pd.DataFrame({"image_id": ["1", "1"], "mention": ["Windhoek"] * 2, "rank": [1, 2],
                               "name": ["Windhoek", "Windhuk"], "cc": ["NA", "NA"],
                               "population": [268132, 268132]})
    predicted, statuses = llm_predict(client, IDS, TEXTS, candidates, top=1)
    assert dict(zip(predicted["image_id"], predicted["country_pred"])) == {
        "1": "NA", "2": "Unknown", "NA": "Unknown"}
    assert predicted["confidence"].isna().all()  # the replies gave none: NaN, not a made-up 0
    sent = json.loads(stub.requests[0]["body"]["messages"][1]["content"])
    assert sent[0]["candidates"] == [{"mention": "Windhoek", "name": "Windhoek", "country": "NA",
                                      "population": 268132}]


def test_llm_prediction_keeps_a_confidence_the_reply_gives_and_nan_otherwise(stub, client):
    from encoderlens.captions.predict import assemble_predictions

    given = {"1": 0.8, "2": "high", "NA": None}

    def reply(body):
        items = json.loads(body["messages"][1]["content"])
        results = []
        for item in items:
            result = {"id": item["id"], "country": {"1": "na", "2": "FR"}.get(item["id"], "Unknown")}
            if given[item["id"]] is not None:
                result["confidence"] = given[item["id"]]
            results.append(result)
        return json.dumps({"results": results[:2]})  # the third caption left unanswered

    stub.default = reply
    predicted, statuses = llm_predict(client, IDS, TEXTS, pd.DataFrame(columns=[
        "image_id", "mention", "rank", "name", "cc", "population"]), batch_size=3)
    assert predicted["image_id"].tolist() == ["1", "2"]
    assert [status for _, status, _ in statuses] == ["ok", "ok", "missing"]
    assert predicted["country_pred"].tolist() == ["NA", "FR"]
    assert predicted.loc[0, "confidence"] == 0.8 and pd.isna(predicted.loc[1, "confidence"])  # "high"

    captions = pd.DataFrame({"image_id": IDS, "country_true": ["NA", "FR", "NA"], "subset": "",
                             "language": "en"})
    translated = pd.DataFrame({"image_id": IDS, "text": TEXTS, "translated": False})
    table = assemble_predictions(captions, translated, pd.DataFrame(columns=["image_id", "mention"]),
                                 predicted, ["house", "car", "church"], "llm").set_index("image_id")
    assert table.loc["1", "confidence"] == 0.8
    assert table["confidence"].isna().sum() == 2  # "high", and the caption without an answer
    assert table.loc["NA", "country_pred"] == "Unknown"
