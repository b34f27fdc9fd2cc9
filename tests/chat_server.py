"""A real HTTP server that speaks OpenAI's chat-completions protocol and runs a real model (transformers, greedy),
for testing clients of that protocol (the teacher) without a network."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from tests.conftest import free_port


def chat_completions_app(model_dir: str, api_key: str) -> FastAPI:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    app = FastAPI()
    app.state.requests = []

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse(
            status_code=status, content={"error": {"message": message, "type": kind, "param": None, "code": None}}
        )

    @app.post("/v1/chat/completions")
    async def complete(request: Request, authorization: str | None = Header(default=None)):
        if authorization != f"Bearer {api_key}":
            return error(401, "Incorrect API key provided", "invalid_request_error")
        body = await request.json()
        app.state.requests.append(body)
        if not body.get("messages"):
            return error(400, "messages must not be empty", "invalid_request_error")
        ids = tokenizer.apply_chat_template(
            body["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=min(int(body.get("max_tokens") or 64), 96),
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        text = tokenizer.decode(out[0][ids.shape[1] :], skip_special_tokens=True)
        return {
            "id": f"chatcmpl-{len(app.state.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": ids.shape[1],
                "completion_tokens": out.shape[1] - ids.shape[1],
                "total_tokens": out.shape[1],
            },
        }

    return app


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` on a free local port for the block; yields its base URL (…/v1)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
