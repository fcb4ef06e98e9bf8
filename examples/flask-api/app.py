"""Seed 000's Flask API, reduced to its contract: POST /demo/check {"text": ...} returns the corrected text, which
it asks the platform's gateway for (OpenAI chat completions at $GATEWAY_URL); GET /health for the probes."""

import json
import os
import urllib.error
import urllib.request

from flask import Flask, jsonify, request

app = Flask(__name__)
PROMPT = "Correct the grammar and spelling of the user's text. Answer with the corrected text only."


def _complete(text: str) -> str:
    body = {
        "model": os.environ.get("MODEL", "Qwen/Qwen2.5-7B-Instruct"),
        "messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": text}],
        "temperature": 0,
        "max_tokens": int(os.environ.get("MAX_TOKENS", "512")),
    }
    headers = {"Content-Type": "application/json"}
    if os.environ.get("GATEWAY_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['GATEWAY_API_KEY']}"
    call = urllib.request.Request(
        f"{os.environ['GATEWAY_URL']}/v1/chat/completions", data=json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(call, timeout=float(os.environ.get("TIMEOUT_S", "60"))) as response:
        return str(json.load(response)["choices"][0]["message"]["content"])


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/demo/check")
def check() -> object:
    text = (request.get_json(silent=True) or {}).get("text")
    if not isinstance(text, str) or not text.strip():
        return jsonify(error="send JSON {\"text\": \"...\"}"), 400
    try:
        return {"text": text, "corrected": _complete(text)}
    except (urllib.error.URLError, KeyError, ValueError) as error:
        return jsonify(error=f"gateway: {error}"), 502
