"""A small OpenAI-compatible completions server for tests (a helper module, not a test file).

:func:`serve` wraps an in-process :class:`~treeq.pipelines.policies.lm.HFBackend` of a
model directory in ``http.server.ThreadingHTTPServer`` on 127.0.0.1 (a free port), in a
background thread, and answers what :class:`~treeq.pipelines.policies.openai.OpenAIBackend`
asks:

* ``GET /v1/models``: one model, named by the directory;
* ``POST /v1/completions`` with ``echo: true, logprobs``: every prompt's tokens with their
  log-probabilities (the first one ``null``), ``text_offset`` (each token's start in the
  text) and the decoded token texts, then ``max_tokens`` (1) greedy token appended;
* ``POST /v1/completions`` without echo: ``n`` samples of each prompt from
  ``HFBackend.sample`` (``max_tokens``, ``temperature``, ``seed``; cut at the newline).

It can misbehave on purpose, on ``/v1/completions`` only: ``fault="garbage"`` (HTTP 200,
not JSON), ``fault="http500"``, ``fault="no-logprobs"`` (JSON without the logprobs), and
``stall_after=K``: every completions request after the first K sleeps ``stall_s`` seconds
(or until the server stops) before it answers.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from treeq.pipelines.policies.lm import LMConfig, get_backend

__all__ = ["serve", "Stop"]

FAULTS = (None, "garbage", "http500", "no-logprobs")


class Stop:
    """Calling it stops the server; ``completions`` counts the completions requests received so far."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread, stopping: threading.Event,
                 counter: dict) -> None:
        self._server, self._thread, self._stopping, self._counter = server, thread, stopping, counter

    @property
    def completions(self) -> int:
        return self._counter["completions"]

    def __call__(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()  # wakes the stalled handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _echo_choices(backend: Any, texts: list[str], max_tokens: int) -> list[dict]:
    """Each text's tokens and log-probabilities (first null), with ``max_tokens`` greedy tokens appended."""
    import torch

    tok = backend.tokenizer
    scored = backend.token_logprobs(texts)
    choices = []
    for i, (text, (ids, offsets, lps)) in enumerate(zip(texts, scored)):
        tokens = [tok.decode([t]) for t in ids]
        values: list[float | None] = [None, *lps[1:]] if ids else []
        starts = [int(s) for s, _ in offsets]
        ids, gen_text = list(ids), ""
        for _ in range(max_tokens):  # greedy, one forward each: max_tokens is 1 in the client's requests
            with backend._lock, torch.inference_mode():
                inp = torch.tensor([ids or [backend.pad_id]], dtype=torch.long, device=backend.device)
                logp = torch.log_softmax(backend.model(input_ids=inp).logits[0, -1].float(), dim=-1)
            nxt = int(logp.argmax())
            piece = tok.decode([nxt])
            tokens.append(piece)
            values.append(float(logp[nxt]))
            starts.append(len(text) + len(gen_text))
            gen_text += piece
            ids.append(nxt)
        choices.append({
            "index": i, "text": text + gen_text, "finish_reason": "length",
            "logprobs": {"tokens": tokens, "token_logprobs": values, "text_offset": starts,
                         "top_logprobs": [None if v is None else {t: v} for t, v in zip(tokens, values)]},
        })
    return choices


def serve(model_dir: Any, *, fault: str | None = None, stall_after: int | None = None, stall_s: float = 30.0,
          reverse_choices: bool = True) -> tuple[str, Stop]:
    """Start the server for ``model_dir``; return ``(base_url, stop)`` (``base_url`` ends in ``/v1``).

    ``reverse_choices`` sends the choices in reverse order (their ``index`` says which is
    which), so a client that does not sort by index fails.
    """
    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
    model_name = str(model_dir)
    backend = get_backend(LMConfig(model=model_name))
    stopping = threading.Event()
    counter = {"completions": 0}
    count_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (a timeout test)
                pass

        def _json(self, obj: Any, status: int = 200) -> None:
            self._send(status, json.dumps(obj).encode("utf-8"))

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json({"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "treeq"}]})
            else:
                self._json({"error": {"message": f"no route {self.path}"}}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/completions":
                self._json({"error": {"message": f"no route {self.path}"}}, 404)
                return
            with count_lock:
                counter["completions"] += 1
                number = counter["completions"]
            if stall_after is not None and number > stall_after and stopping.wait(stall_s):
                return  # stopped while stalled; a stall that ends answers as usual
            if fault == "garbage":
                self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                return
            if fault == "http500":
                self._json({"object": "error", "message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                            "type": "InternalServerError", "code": 500}, 500)
                return
            try:
                req = json.loads(raw)
                prompts = req["prompt"]
                prompts = [prompts] if isinstance(prompts, str) else list(prompts)
                if req.get("echo"):
                    choices = _echo_choices(backend, prompts, int(req.get("max_tokens", 16)))
                else:
                    n = int(req.get("n", 1))
                    drawn = backend.sample(prompts, n, int(req.get("max_tokens", 16)),
                                           float(req.get("temperature", 1.0)), int(req.get("seed", 0)))
                    choices = [{"index": i * n + j, "text": t, "finish_reason": "stop", "logprobs": None}
                               for i, texts in enumerate(drawn) for j, t in enumerate(texts)]
            except Exception as exc:  # a bad request: say so as vLLM would
                self._json({"object": "error", "message": f"{type(exc).__name__}: {exc}", "code": 400}, 400)
                return
            if fault == "no-logprobs":
                for c in choices:
                    c["logprobs"] = None
            if reverse_choices:
                choices = choices[::-1]
            self._json({"id": f"cmpl-{number}", "object": "text_completion", "model": model_name,
                        "choices": choices})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name="lm-server")
    thread.start()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/v1", Stop(server, thread, stopping, counter)
