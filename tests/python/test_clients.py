"""`pistil serve` driven by the official `ollama` and `openai` Python clients.

Run by `tools/tests/serve_python.rs`, which starts the servers and sets:
  PISTIL_URL        an open server (a tiny R1-template model loaded)
  PISTIL_MODEL      its model name
  PISTIL_KEYED_URL  a server started with --api-key
  PISTIL_KEY        that key
By hand: start `pistil serve -m tests/fixtures/models/tiny-qwen2.q8_0.gguf -c 256`
and `pistil serve ... --port 11435 --api-key k`, export the variables, then
`python3 -m pytest tests/python/test_clients.py -q`.
"""

import json
import os

import httpx
import ollama
import openai
import pytest
from pydantic import BaseModel, Field

URL = os.environ.get("PISTIL_URL", "http://127.0.0.1:11434")
MODEL = os.environ.get("PISTIL_MODEL", "tiny-qwen2.q8_0")
KEYED_URL = os.environ.get("PISTIL_KEYED_URL")
KEY = os.environ.get("PISTIL_KEY", "")


@pytest.fixture(scope="module")
def oc():
    return ollama.Client(host=URL, timeout=120)


@pytest.fixture(scope="module")
def ai():
    return openai.OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0, timeout=120)


class Lamp(BaseModel):
    room: str = Field(max_length=12)
    level: int = Field(ge=0, le=100)
    on: bool


# ---- ollama ---------------------------------------------------------------


def test_ollama_list_ps_show(oc):
    names = [m.model for m in oc.list().models]
    assert MODEL in names
    ps = oc.ps().models
    assert ps and ps[0].model == MODEL
    assert ps[0].expires_at is not None
    info = oc.show(MODEL)
    assert info.details.format == "gguf"
    assert "completion" in info.capabilities
    assert info.modelinfo["general.architecture"] == "qwen2"


def test_ollama_generate(oc):
    r = oc.generate(model=MODEL, prompt="Why is the sky blue?", options={"num_predict": 8, "seed": 1})
    assert r.done and r.done_reason in ("stop", "length")
    assert r.eval_count <= 8
    assert r.total_duration > 0 and r.prompt_eval_count > 0
    parts = list(oc.generate(model=MODEL, prompt="Hello", stream=True, options={"num_predict": 6}))
    assert parts[-1].done and all(not p.done for p in parts[:-1])


def test_ollama_chat_thinking_is_separate(oc):
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    r = oc.chat(model=MODEL, messages=msgs, think=True, options={"num_predict": 16, "seed": 3})
    assert r.message.role == "assistant"
    assert "<think>" not in (r.message.content or "") and "</think>" not in (r.message.content or "")
    r = oc.chat(model=MODEL, messages=msgs, think=False, options={"num_predict": 8, "seed": 3})
    assert not r.message.thinking
    chunks = list(oc.chat(model=MODEL, messages=msgs, stream=True, options={"num_predict": 8}))
    assert chunks[-1].done
    assert all("</think>" not in (c.message.content or "") for c in chunks)


def test_ollama_structured_output(oc):
    for seed in range(5):
        r = oc.chat(
            model=MODEL,
            messages=[{"role": "user", "content": "The kitchen lamp is on at 40%."}],
            format=Lamp.model_json_schema(),
            options={"seed": seed, "temperature": 1.0, "num_predict": 80},
        )
        Lamp.model_validate_json(r.message.content)
    r = oc.generate(model=MODEL, prompt="json", format="json", options={"num_predict": 40})
    assert isinstance(json.loads(r.response), dict)


def test_ollama_errors(oc):
    with pytest.raises(ollama.ResponseError) as e:
        oc.generate(model="no-such-model:1b", prompt="x")
    assert e.value.status_code == 404 and "not found" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        oc.pull("no-such-model:1b")
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as e:
        oc.generate(model=MODEL, prompt="x", options={"num_predict": -5})
    assert e.value.status_code == 400 and "num_predict" in e.value.error


# ---- openai ---------------------------------------------------------------


def test_openai_models(ai):
    ids = [m.id for m in ai.models.list().data]
    assert MODEL in ids


def test_openai_chat(ai):
    r = ai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi there"}], max_tokens=8, seed=1
    )
    c = r.choices[0]
    assert c.finish_reason in ("stop", "length")
    assert c.message.role == "assistant"
    assert "</think>" not in (c.message.content or "")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # Streaming, with usage at the end.
    stream = ai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    text = "".join((ch.choices[0].delta.content or "") for ch in chunks if ch.choices)
    assert "</think>" not in text


def test_openai_completions(ai):
    r = ai.completions.create(model=MODEL, prompt="The quick brown fox", max_tokens=5, temperature=0)
    assert r.object == "text_completion" and isinstance(r.choices[0].text, str)
    assert r.usage.completion_tokens <= 5


def test_openai_structured_output(ai):
    for seed in range(4):
        r = ai.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "The hall lamp is off."}],
            response_format=Lamp,
            max_tokens=80,
            seed=seed,
            temperature=1.0,
        )
        lamp = r.choices[0].message.parsed
        assert isinstance(lamp, Lamp) and 0 <= lamp.level <= 100
    r = ai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "json"}],
        response_format={"type": "json_object"},
        max_tokens=40,
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_openai_errors(ai):
    with pytest.raises(openai.NotFoundError):
        ai.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as e:
        ai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
    assert e.value.body["param"] == "n"


# ---- API key --------------------------------------------------------------


@pytest.mark.skipif(not KEYED_URL, reason="no keyed server")
def test_api_key():
    assert httpx.get(KEYED_URL + "/health").status_code == 200
    assert httpx.get(KEYED_URL + "/api/tags").status_code == 401
    good = openai.OpenAI(base_url=KEYED_URL + "/v1", api_key=KEY, max_retries=0)
    assert good.models.list().data
    bad = openai.OpenAI(base_url=KEYED_URL + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    oc = ollama.Client(host=KEYED_URL, headers={"Authorization": f"Bearer {KEY}"})
    assert oc.list().models
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=KEYED_URL).list()
    assert e.value.status_code == 401
