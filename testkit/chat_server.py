"""A real HTTP app that speaks OpenAI's chat-completions protocol, for testing clients of that protocol (the teacher)
without a network: it runs a real model (transformers, greedy), or answers from a script. Serve it with
`testkit.servers.serving`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

# One completion: the request's messages and max_tokens → (text, prompt tokens, completion tokens).
Writer = Callable[[list[dict[str, Any]], int], tuple[str, int, int]]


def chat_completions_app(model_dir: str, api_key: str) -> FastAPI:
    """The protocol over a real model: the tiny model's greedy continuation of the chat."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BatchEncoding

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def write(messages: list[dict[str, Any]], max_tokens: int) -> tuple[str, int, int]:
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        assert isinstance(encoded, BatchEncoding)  # what return_dict=True returns
        ids = encoded["input_ids"]
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=min(max_tokens, 96),
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        text = tokenizer.decode(out[0][ids.shape[1] :], skip_special_tokens=True)
        assert isinstance(text, str)  # one sequence decodes to one string
        return text, ids.shape[1], out.shape[1] - ids.shape[1]

    return protocol_app(api_key, write)


def scripted_chat_app(api_key: str, reply: Callable[[list[dict[str, Any]]], str]) -> FastAPI:
    """The protocol with a scripted writer: `reply(messages)` is the assistant's text (token counts are words)."""

    def write(messages: list[dict[str, Any]], max_tokens: int) -> tuple[str, int, int]:
        text = reply(messages)
        return text, sum(len(str(m.get("content", "")).split()) for m in messages), len(text.split())

    return protocol_app(api_key, write)


def protocol_app(api_key: str, write: Writer) -> FastAPI:
    """POST /v1/chat/completions with bearer-key auth and OpenAI's error shape; `app.state.requests` keeps each body."""
    app = FastAPI()
    app.state.requests = []

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse(
            status_code=status, content={"error": {"message": message, "type": kind, "param": None, "code": None}}
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def complete(request: Request, authorization: str | None = Header(default=None)) -> dict | JSONResponse:
        if authorization != f"Bearer {api_key}":
            return error(401, "Incorrect API key provided", "invalid_request_error")
        body = await request.json()
        app.state.requests.append(body)
        if not body.get("messages"):
            return error(400, "messages must not be empty", "invalid_request_error")
        text, prompt_tokens, completion_tokens = write(body["messages"], int(body.get("max_tokens") or 64))
        return {
            "id": f"chatcmpl-{len(app.state.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    return app
