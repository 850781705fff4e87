"""A customer's code: the official Python SDKs (PyPI `anthropic`, `openai`) calling creditgate's
metering proxy, driven by crates/creditgate/tests/sdk_support/mod.rs.

One process serves a whole test (the SDKs take seconds to import): it prints `{"ready": ...}`,
then reads one JSON *phase* a line from stdin and answers one JSON line for it:

    phase  = {"base_url": "http://127.0.0.1:PORT", "api_key": "...", "max_retries": 2,
              "concurrency": 1, "stop_on_code": null | "credit_balance_exhausted",
              "calls": [call, ...]}
    call   = {"sdk": "anthropic" | "openai", "model": "...", "prompt": "...",
              "system": null | "...", "max_tokens": 300, "stream": false,
              "extra_headers": {}, "endpoint": "default", "extra": null | {...}}
    answer = {"results": [result, ...], "elapsed_s": 1.2}   (or {"error": "traceback"})
    result = {"index", "ok", "status", "exception", "body_type", "error_type", "error_code",
              "billing_url", "message", "access_state", "balance_available", "attempts",
              "retries_taken", "input_tokens", "output_tokens", "text",
              "cached_tokens", "reasoning_tokens", "response_status", "ids", "vectors",
              "dimensions", "cache_write_5m_tokens", "cache_write_1h_tokens",
              "web_search_requests", "web_fetch_requests"}

A call's `endpoint` says which SDK method it makes (`default`: `messages.create(**extra)` /
`chat.completions.create`, as above):

    "responses"     openai    responses.create(model, input=prompt, instructions=system,
                              max_output_tokens=max_tokens, stream=stream, **extra)
    "embeddings"    openai    embeddings.create(model, input=extra.input or prompt, **extra)
    "count_tokens"  anthropic messages.count_tokens(model, messages=[prompt], system, **extra)
    "models"        both      models.list()                    (ids: the models listed)
    "model"         both      models.retrieve(model)           (ids: [its id])
    "unknown"       both      anthropic messages.batches.list(), openai batches.list():
                              endpoints the proxy does not serve

Calls run on `concurrency` threads, each with SDK clients of its own; thread `t` makes calls
`t`, `t + concurrency`, ... in order, all threads starting together, and stops early once a call
of it was refused with `stop_on_code`. Calls not made are not in `results`.

The clients are made as documented (`anthropic.Anthropic(base_url=URL + "/anthropic", ...)`,
`openai.OpenAI(base_url=URL + "/openai/v1", ...)`) with an `http_client` of the SDK's own
`DefaultHttpxClient` carrying two things only: a request hook counting the HTTP attempts of
each call (what shows a 402 is not retried), and one TLS context shared by all clients (loading
the CA bundle costs about 30 ms a client; the proxy is plain HTTP on loopback anyway).
"""

import json
import ssl
import sys
import threading
import time
import traceback

import anthropic
import openai

TLS = ssl.create_default_context()


class Clients:
    """One thread's SDK clients for one phase, counting HTTP attempts."""

    def __init__(self, phase):
        self.phase = phase
        self.attempts = 0
        self._anthropic = None
        self._openai = None

    def _count(self, _request):
        self.attempts += 1

    def _http(self, sdk):
        return sdk.DefaultHttpxClient(verify=TLS, event_hooks={"request": [self._count]})

    def anthropic(self):
        if self._anthropic is None:
            self._anthropic = anthropic.Anthropic(
                base_url=self.phase["base_url"] + "/anthropic",
                api_key=self.phase["api_key"],
                max_retries=self.phase["max_retries"],
                http_client=self._http(anthropic),
            )
        return self._anthropic

    def openai(self):
        if self._openai is None:
            self._openai = openai.OpenAI(
                base_url=self.phase["base_url"] + "/openai/v1",
                api_key=self.phase["api_key"],
                max_retries=self.phase["max_retries"],
                http_client=self._http(openai),
            )
        return self._openai


def anthropic_call(client, call):
    kwargs = {
        "model": call["model"],
        "max_tokens": call["max_tokens"],
        "messages": [{"role": "user", "content": call["prompt"]}],
    }
    if call.get("system"):
        kwargs["system"] = call["system"]
    kwargs.update(call.get("extra") or {})
    if call.get("extra_headers"):
        kwargs["extra_headers"] = call["extra_headers"]
    usage, text, extras = {}, [], {}
    if call.get("stream"):
        raw = client.messages.with_raw_response.create(stream=True, **kwargs)
        for event in raw.parse():
            if event.type == "message_start":
                usage["input_tokens"] = event.message.usage.input_tokens
                extras.update(cache_extras(event.message.usage))
            elif event.type == "message_delta":
                usage["output_tokens"] = event.usage.output_tokens
                extras.update(tool_extras(event.usage))
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                text.append(event.delta.text)
    else:
        raw = client.messages.with_raw_response.create(**kwargs)
        message = raw.parse()
        usage = {
            "input_tokens": message.usage.input_tokens,
            "output_tokens": message.usage.output_tokens,
        }
        extras.update(cache_extras(message.usage))
        extras.update(tool_extras(message.usage))
        text = [block.text for block in message.content if block.type == "text"]
    return raw, usage, "".join(text), extras


def cache_extras(usage):
    """The cache writes by lifetime, as the SDK's typed usage reads them."""
    split = getattr(usage, "cache_creation", None)
    if split is None:
        return {}
    return {
        "cache_write_5m_tokens": split.ephemeral_5m_input_tokens,
        "cache_write_1h_tokens": split.ephemeral_1h_input_tokens,
    }


def tool_extras(usage):
    """The server-tool requests, as the SDK's typed usage reads them."""
    tools = getattr(usage, "server_tool_use", None)
    if tools is None:
        return {}
    return {
        "web_search_requests": tools.web_search_requests,
        "web_fetch_requests": getattr(tools, "web_fetch_requests", None),
    }


def openai_call(client, call):
    kwargs = {
        "model": call["model"],
        "max_completion_tokens": call["max_tokens"],
        "messages": [],
    }
    if call.get("system"):
        kwargs["messages"].append({"role": "system", "content": call["system"]})
    kwargs["messages"].append({"role": "user", "content": call["prompt"]})
    if call.get("extra_headers"):
        kwargs["extra_headers"] = call["extra_headers"]
    usage, text = {}, []
    if call.get("stream"):
        raw = client.chat.completions.with_raw_response.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        )
        for chunk in raw.parse():
            if chunk.usage is not None:
                usage = {
                    "input_tokens": chunk.usage.prompt_tokens,
                    "output_tokens": chunk.usage.completion_tokens,
                }
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
    else:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        completion = raw.parse()
        if completion.usage is not None:
            usage = {
                "input_tokens": completion.usage.prompt_tokens,
                "output_tokens": completion.usage.completion_tokens,
            }
        text = [choice.message.content or "" for choice in completion.choices]
    return raw, usage, "".join(text)


def responses_call(client, call):
    kwargs = {
        "model": call["model"],
        "input": call["prompt"],
        "max_output_tokens": call["max_tokens"],
    }
    if call.get("system"):
        kwargs["instructions"] = call["system"]
    kwargs.update(call.get("extra") or {})
    if call.get("extra_headers"):
        kwargs["extra_headers"] = call["extra_headers"]
    extras, text, final = {}, [], None
    if call.get("stream"):
        raw = client.responses.with_raw_response.create(stream=True, **kwargs)
        for event in raw.parse():
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type in ("response.completed", "response.incomplete", "response.failed"):
                final = event.response
    else:
        raw = client.responses.with_raw_response.create(**kwargs)
        final = raw.parse()
        text.append(final.output_text)
    usage = {}
    if final is not None:
        extras["response_status"] = final.status
        if final.usage is not None:
            usage = {
                "input_tokens": final.usage.input_tokens,
                "output_tokens": final.usage.output_tokens,
            }
            extras["cached_tokens"] = final.usage.input_tokens_details.cached_tokens
            extras["reasoning_tokens"] = final.usage.output_tokens_details.reasoning_tokens
    return raw, usage, "".join(text), extras


def embeddings_call(client, call):
    kwargs = {"model": call["model"], "input": call["prompt"]}
    kwargs.update(call.get("extra") or {})
    if call.get("extra_headers"):
        kwargs["extra_headers"] = call["extra_headers"]
    raw = client.embeddings.with_raw_response.create(**kwargs)
    result = raw.parse()
    usage = {"input_tokens": result.usage.prompt_tokens, "output_tokens": 0}
    extras = {
        "vectors": len(result.data),
        "dimensions": len(result.data[0].embedding) if result.data else 0,
    }
    return raw, usage, "", extras


def count_tokens_call(client, call):
    kwargs = {"model": call["model"], "messages": [{"role": "user", "content": call["prompt"]}]}
    if call.get("system"):
        kwargs["system"] = call["system"]
    kwargs.update(call.get("extra") or {})
    if call.get("extra_headers"):
        kwargs["extra_headers"] = call["extra_headers"]
    raw = client.messages.with_raw_response.count_tokens(**kwargs)
    return raw, {"input_tokens": raw.parse().input_tokens}, "", {}


def models_call(client, call):
    raw = client.models.with_raw_response.list()
    page = raw.parse()
    return raw, {}, "", {"ids": [model.id for model in page.data]}


def model_call(client, call):
    raw = client.models.with_raw_response.retrieve(call["model"])
    return raw, {}, "", {"ids": [raw.parse().id]}


def unknown_call(client, call):
    if call["sdk"] == "anthropic":
        raw = client.messages.batches.with_raw_response.list()
    else:
        raw = client.batches.with_raw_response.list()
    return raw, {}, "", {}


ENDPOINT_CALLS = {
    "responses": responses_call,
    "embeddings": embeddings_call,
    "count_tokens": count_tokens_call,
    "models": models_call,
    "model": model_call,
    "unknown": unknown_call,
}


def qualified(error):
    return type(error).__module__.split(".")[0] + "." + type(error).__name__


def error_fields(sdk, body):
    """The error object of the style's envelope: Anthropic's exception body is the whole
    envelope, OpenAI's is already its `error` member."""
    if not isinstance(body, dict):
        return None, {}
    if sdk == "anthropic":
        inner = body.get("error")
        return body.get("type"), inner if isinstance(inner, dict) else {}
    return None, body


def one_call(clients, index, call):
    result = {
        "index": index,
        "ok": False,
        "status": None,
        "exception": None,
        "body_type": None,
        "error_type": None,
        "error_code": None,
        "billing_url": None,
        "message": None,
        "access_state": None,
        "balance_available": None,
        "attempts": 0,
        "retries_taken": None,
        "input_tokens": None,
        "output_tokens": None,
        "text": None,
        "cached_tokens": None,
        "reasoning_tokens": None,
        "response_status": None,
        "ids": None,
        "vectors": None,
        "dimensions": None,
        "cache_write_5m_tokens": None,
        "cache_write_1h_tokens": None,
        "web_search_requests": None,
        "web_fetch_requests": None,
        "rate_headers": {},
        "elapsed_ms": None,
    }
    sdk = call["sdk"]
    before = clients.attempts
    started = time.monotonic()
    headers = None
    try:
        client = clients.anthropic() if sdk == "anthropic" else clients.openai()
        endpoint = call.get("endpoint") or "default"
        if endpoint != "default":
            raw, usage, text, extras = ENDPOINT_CALLS[endpoint](client, call)
            result.update(extras)
        elif sdk == "anthropic":
            raw, usage, text, extras = anthropic_call(client, call)
            result.update(extras)
        else:
            raw, usage, text = openai_call(client, call)
        result.update(
            ok=True,
            status=raw.status_code,
            retries_taken=raw.retries_taken,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            text=text[:200],
        )
        headers = raw.headers
    except (anthropic.APIStatusError, openai.APIStatusError) as error:
        body_type, inner = error_fields(sdk, error.body)
        result.update(
            status=error.status_code,
            exception=qualified(error),
            body_type=body_type,
            error_type=inner.get("type"),
            error_code=inner.get("code"),
            billing_url=inner.get("billing_url"),
            message=inner.get("message"),
        )
        headers = error.response.headers
    except Exception as error:  # connection errors, client-side refusals: reported, not raised
        result.update(exception=qualified(error), message=str(error)[:500])
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    if headers is not None:
        result["rate_headers"] = {
            k.lower(): v for k, v in headers.items()
            if "ratelimit" in k.lower() or k.lower().startswith("retry-after")
        }
        result["access_state"] = headers.get("creditgate-access-state")
        result["balance_available"] = headers.get("creditgate-balance-available")
    result["attempts"] = clients.attempts - before
    return result


def run_phase(phase):
    calls = phase["calls"]
    threads_n = max(1, min(phase.get("concurrency", 1), len(calls) or 1))
    stop_on = phase.get("stop_on_code")
    results, lock = [], threading.Lock()
    barrier = threading.Barrier(threads_n)
    failures = []

    def worker(t):
        try:
            clients = Clients(phase)
            mine = [(i, calls[i]) for i in range(t, len(calls), threads_n)]
            # Make the clients before the start line, so the calls race, not the set-up.
            for sdk in {call["sdk"] for _, call in mine}:
                clients.anthropic() if sdk == "anthropic" else clients.openai()
            barrier.wait()
            for index, call in mine:
                result = one_call(clients, index, call)
                with lock:
                    results.append(result)
                if stop_on is not None and result["error_code"] == stop_on:
                    break
        except Exception:
            failures.append(traceback.format_exc())
            barrier.abort()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        return {"error": failures[0]}
    results.sort(key=lambda r: r["index"])
    return {"results": results, "elapsed_s": round(time.monotonic() - started, 3)}


def main():
    print(
        json.dumps(
            {"ready": True, "anthropic": anthropic.__version__, "openai": openai.__version__}
        ),
        flush=True,
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = run_phase(json.loads(line))
        except Exception:
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
