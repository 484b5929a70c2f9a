"""The ``openai`` backend of the ``hf`` policy: an OpenAI-compatible ``/v1/completions`` server.

vLLM, SGLang or any server that speaks the (legacy) completions API serves the model;
this module is the client, built on the standard library alone (``urllib``, ``json``).

* **score**: each ``prompt + continuation`` is sent with ``echo: true, logprobs: 1,
  max_tokens: 1, temperature: 0``; the server echoes the text's tokens with their
  log-probabilities and character offsets (``text_offset``). The continuation's tokens
  are those that start at or after the prompt's end and before the text's end (the one
  generated token starts at the end, so it never counts), exactly as
  :class:`~treeq.pipelines.policies.lm.HFBackend` counts them. Texts go
  :data:`BATCH_TEXTS` to a request, as a list of prompts.
* **sample**: ``n`` completions of each prompt with ``stop: ["\\n"]`` and a ``seed``.
* **chat**: one greedy ``/chat/completions`` answer per prompt (``prm-eval``'s judge).

The request's ``model`` is the ``model`` given, else the first id of ``GET /models``.
When the given ``model`` names a tokenizer that loads (a local directory or hub id), the
prompt goes through its chat template as :class:`HFBackend` does; otherwise the prompt
is sent as it is and actions follow it after a space.

``OPENAI_API_KEY``, when set, is sent as the bearer token (a server started with
``--api-key``). Every failure is a :class:`~treeq.errors.ModelError` of one line naming the server: not
reachable, no answer within the timeout, an HTTP error status (with an excerpt of the
body) or an answer that is not a completions response.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from ...errors import ModelError
from .backend import STEP_STOP

__all__ = ["OpenAIBackend", "BATCH_TEXTS"]

BATCH_TEXTS = 64
"""Texts (prompts times ``n``) in one request at most."""

_EXCERPT = 200


def _one_line(text: str, limit: int = _EXCERPT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _body_excerpt(body: bytes) -> str:
    """A short excerpt of an error body; the ``message`` of an OpenAI-style JSON error where there is one."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg.strip():
            text = msg
    return _one_line(text) or "(empty body)"


class _Malformed(Exception):
    """Raised inside the parsing of an answer; turned into a ModelError naming the server."""


def _number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
        raise _Malformed(f"{x!r} is not a log-probability")
    return float(x)


class OpenAIBackend:
    """A language model behind an OpenAI-compatible ``/v1/completions`` endpoint.

    Args:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1`` (``/completions`` and
            ``/models`` are appended).
        model: The ``model`` field of the requests; None: the first id of ``GET /models``.
            If it names a tokenizer that loads, its chat template formats the prompts.
        timeout: Seconds to wait for one request.

    Raises:
        ModelError: ``model`` is None and the server cannot be asked, or lists no model.
    """

    def __init__(self, base_url: str, model: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = str(base_url).rstrip("/")
        self.timeout = float(timeout)
        self.tokenizer = self._tokenizer(model) if model else None
        self.model = model if model else self._first_model()
        self.joiner = "" if self._chat_template() else " "

    # -- the protocol -------------------------------------------------------------
    def format_prompt(self, text: str) -> str:
        if self._chat_template():
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return text

    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]) -> list[list[tuple[float, int]]]:
        items = [(i, p, c) for i, (p, cs) in enumerate(zip(prompts, continuations)) for c in cs]
        out: list[list[tuple[float, int]]] = [[] for _ in prompts]
        for start in range(0, len(items), BATCH_TEXTS):
            chunk = items[start : start + BATCH_TEXTS]
            payload = {"model": self.model, "prompt": [p + c for _, p, c in chunk], "echo": True, "logprobs": 1,
                       "max_tokens": 1, "temperature": 0}
            data = self._post("/completions", payload)
            try:
                choices = self._choices(data, len(chunk))
                for (i, p, c), choice in zip(chunk, choices):
                    out[i].append(self._continuation_logprob(choice, len(p), len(p) + len(c)))
            except _Malformed as exc:
                raise self._malformed(str(exc)) from None
        return out

    def sample(self, prompts: Sequence[str], n: int, max_new_tokens: int, temperature: float, seed: int
               ) -> list[list[str]]:
        out: list[list[str]] = []
        per = max(1, BATCH_TEXTS // max(n, 1))
        for start in range(0, len(prompts), per):
            chunk = list(prompts[start : start + per])
            payload = {"model": self.model, "prompt": chunk, "n": n, "max_tokens": max_new_tokens,
                       "temperature": temperature, "stop": [STEP_STOP], "seed": seed}
            data = self._post("/completions", payload)
            try:
                choices = self._choices(data, len(chunk) * n)
                texts = []
                for choice in choices:
                    text = choice.get("text")
                    if not isinstance(text, str):
                        raise _Malformed(f"choice {choice.get('index')} has no text")
                    texts.append(text.split(STEP_STOP, 1)[0])
            except _Malformed as exc:
                raise self._malformed(str(exc)) from None
            out.extend(texts[j * n : (j + 1) * n] for j in range(len(chunk)))
        return out

    def chat(self, prompts: Sequence[str], max_tokens: int) -> list[str]:
        """One greedy answer per prompt from ``/chat/completions`` (a judge's critique), each
        prompt the user's message."""
        out = []
        for prompt in prompts:
            payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": max_tokens, "temperature": 0}
            data = self._post("/chat/completions", payload)
            try:
                choice = self._choices(data, 1)[0]
                text = choice.get("message", {}).get("content") if isinstance(choice.get("message"), dict) else None
                if not isinstance(text, str):
                    raise _Malformed("the choice has no message content")
            except _Malformed as exc:
                raise self._malformed(str(exc)) from None
            out.append(text)
        return out

    # -- set-up -------------------------------------------------------------------
    @staticmethod
    def _tokenizer(model: str) -> Any:
        """The tokenizer ``model`` names, or None when it names none that loads (a served model's name)."""
        from ..models import load_tokenizer

        try:
            return load_tokenizer(model)
        except Exception:  # not a directory nor a hub id, not reachable, not a tokenizer: send plain prompts
            return None

    def _chat_template(self) -> bool:
        return bool(self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None))

    def _first_model(self) -> str:
        data = self._request("/models")
        try:
            ids = [m["id"] for m in data["data"]]
            if not ids or not all(isinstance(i, str) and i for i in ids):
                raise _Malformed("its model list is empty" if not ids else f"model ids {ids!r}")
        except (KeyError, TypeError) as exc:
            raise ModelError(f"the model server at {self.base_url} answered GET /models with something that is not "
                             f"a model list: {_one_line(json.dumps(data))}") from exc
        except _Malformed as exc:
            raise ModelError(f"the model server at {self.base_url} lists no usable model ({exc}): "
                             "give --model") from None
        return ids[0]

    # -- answers ------------------------------------------------------------------
    def _malformed(self, what: str) -> ModelError:
        return ModelError(f"the model server at {self.base_url} answered something that is not an OpenAI "
                          f"completions response: {_one_line(what)}")

    def _choices(self, data: Any, expected: int) -> list[dict]:
        """The response's choices, ordered by ``index``; exactly ``expected`` of them."""
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise _Malformed(f"no choices in {_one_line(json.dumps(data), 120)}")
        choices = data["choices"]
        if len(choices) != expected or not all(isinstance(c, dict) for c in choices):
            raise _Malformed(f"{len(choices)} choices for {expected} texts")
        index = [c.get("index") for c in choices]
        if all(isinstance(i, int) and not isinstance(i, bool) for i in index):
            if sorted(index) != list(range(expected)):
                raise _Malformed(f"choice indices {sorted(index)[:8]} are not 0..{expected - 1}")
            choices = sorted(choices, key=lambda c: c["index"])
        elif any(i is not None for i in index):
            raise _Malformed(f"choice indices {index[:8]} are not integers")
        return choices

    @staticmethod
    def _continuation_logprob(choice: dict, lo: int, hi: int) -> tuple[float, int]:
        """(sum of log-probabilities, count) of the echoed tokens starting in ``[lo, hi)``."""
        lp = choice.get("logprobs")
        if not isinstance(lp, dict):
            raise _Malformed(f"choice {choice.get('index')} has no logprobs (does the server echo prompt "
                             "log-probabilities?)")
        tokens, values, offsets = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
        if not (isinstance(tokens, list) and isinstance(values, list) and isinstance(offsets, list)):
            raise _Malformed(f"choice {choice.get('index')} logprobs lack tokens, token_logprobs or text_offset")
        if not len(tokens) == len(values) == len(offsets):
            raise _Malformed(f"choice {choice.get('index')}: {len(tokens)} tokens, {len(values)} log-probabilities, "
                             f"{len(offsets)} offsets")
        total, count = 0.0, 0
        for pos, (off, value) in enumerate(zip(offsets, values)):
            if isinstance(off, bool) or not isinstance(off, int):
                raise _Malformed(f"text offset {off!r} is not an integer")
            if not lo <= off < hi:
                continue
            if value is None:
                if pos != 0:  # only the text's first token has no log-probability
                    raise _Malformed(f"choice {choice.get('index')}: token {pos} has no log-probability")
                value = 0.0
            total += _number(value)
            count += 1
        return total, count

    # -- transport ----------------------------------------------------------------
    def _post(self, path: str, payload: dict) -> Any:
        return self._request(path, payload)

    def _request(self, path: str, payload: dict | None = None) -> Any:
        """GET (no payload) or POST JSON to ``base_url + path``; the decoded JSON answer."""
        url = self.base_url + path
        method = "GET" if payload is None else "POST"
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):  # a server started with --api-key
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        where = f"the model server at {self.base_url}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                excerpt = _body_excerpt(exc.read())
            except Exception:  # the body itself broke off
                excerpt = "(no body)"
            reason = _one_line(exc.reason or "", 60)
            status = f"HTTP {exc.code} {reason}" if reason else f"HTTP {exc.code}"
            raise ModelError(f"{where} answered {status} to {method} {path}: {excerpt}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):  # socket.timeout is TimeoutError
                raise self._timeout(where) from None
            raise ModelError(f"cannot reach the model server at {self.base_url}: {_one_line(exc.reason)}") from None
        except TimeoutError:
            raise self._timeout(where) from None
        except (OSError, http.client.HTTPException) as exc:  # reset, closed mid-answer, not HTTP at all
            cause = _one_line(str(exc) or type(exc).__name__)
            raise ModelError(f"cannot reach the model server at {self.base_url}: {cause}") from None
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            raise ModelError(f"{where} answered something that is not an OpenAI completions response: "
                             f"{method} {path} gave non-JSON {_one_line(body.decode('utf-8', 'replace'), 80)!r}"
                             ) from None

    def _timeout(self, where: str) -> ModelError:
        return ModelError(f"{where} did not answer within {self.timeout:g} s (raise --timeout if it is busy)")
