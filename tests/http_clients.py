#!/usr/bin/env python3
"""test_http_clients: `tis serve --http` with clients nobody here wrote.

The official `openai` package: the model list, a chat completion plain and
streamed (both must say Paris for the capital of France), a completion, and
bad requests raising the SDK's own error types (BadRequestError for a
wrong-typed field and for a prompt over the model's context,
NotFoundError for another model). `prometheus_client`'s text parser reads
/metrics before and after that traffic: the families parse, and the
counters and histograms moved by what was sent.

Run by ctest (TIS_BIN, TIS_MODEL set); exit 77 (skipped) only when the
packages are missing (scripts/test.sh installs them with pip).
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import openai
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print(f"test_http_clients: skipped: {e} (pip install openai prometheus_client)")
    sys.exit(77)

FAILED = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILED.append(what)


def start_server(tmp):
    log = open(os.path.join(tmp, "serve.log"), "w+")
    cmd = [os.environ["TIS_BIN"], "serve", "--front", f"ipc://{tmp}/front", "--back", f"ipc://{tmp}/back",
           "-m", os.environ["TIS_MODEL"], "--http", "127.0.0.1:0", "--heartbeat_ms", "200"]
    env = dict(os.environ)  # the default numerics (see tests/test_http.c)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    port = None
    for _ in range(300):
        time.sleep(0.1)
        log.seek(0)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
        if m:
            port = int(m.group(1))
            break
    if port is None:
        proc.kill()
        log.seek(0)
        sys.exit(f"test_http_clients: the server did not listen:\n{log.read()}")
    for _ in range(600):  # ready: a worker of every role alive
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.1)
    return proc, port, log


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    check(ctype.startswith("text/plain; version=0.0.4"), f"/metrics content type ({ctype})")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return fams


def value(fams, family, sample, **labels):
    for s in fams[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(f"{sample} {labels}")


def main():
    tmp = tempfile.mkdtemp(prefix="tis-http-")
    proc, port, log = start_server(tmp)
    try:
        run(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            FAILED.append("the server did not stop on SIGTERM")
        log.seek(0)
        if FAILED:
            print("--- serve log ---\n" + log.read()[-4000:])
    print(f"test_http_clients: {len(FAILED)} failed" + (": " + "; ".join(FAILED) if FAILED else ""))
    return 1 if FAILED else 0


def run(port):
    before = scrape(port)
    check("tis_http_requests" in before and before["tis_stage_seconds"].type == "histogram",
          "/metrics parses (prometheus_client) with its counter and histogram families")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    check(model == "SmolLM2-135M-Instruct.Q4_1", f"models.list: {model}")
    q = [{"role": "user", "content": "What is the capital of France?"}]

    r = client.chat.completions.create(model=model, messages=q)
    text = r.choices[0].message.content
    check("Paris" in text, f"chat completion: {text!r}")
    check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, f"usage: {r.usage}")
    extra = r.model_extra or {}
    check(extra.get("kv_policy") == "full" and extra.get("kv_bytes", 0) > 0 and extra.get("compression") == 1,
          f"KV echo: policy {extra.get('kv_policy')}, {extra.get('kv_bytes')} bytes, x{extra.get('compression')}")

    parts, finish = [], None
    for ch in client.chat.completions.create(model=model, messages=q, stream=True):
        if ch.choices and ch.choices[0].delta.content:
            parts.append(ch.choices[0].delta.content)
        if ch.choices and ch.choices[0].finish_reason:
            finish = ch.choices[0].finish_reason
    streamed = "".join(parts)
    check("Paris" in streamed and len(parts) > 2 and finish == "stop",
          f"streamed chat completion: {len(parts)} chunks, {streamed!r}, finish {finish}")
    check(streamed == text, "streamed text == plain text (greedy)")

    r = client.chat.completions.create(model=model, messages=q, extra_body={"kv_policy": "snapkv",
                                                                            "kv_budget_tokens": 4})
    extra = r.model_extra or {}
    check(extra.get("kv_policy") == "snapkv" and extra.get("compression", 0) > 1,
          f"KV policy as an extra body field: {extra.get('kv_policy')}, x{extra.get('compression'):.2f}")

    doc = "Marie keeps her bicycle in the blue shed. The cat sleeps on the red sofa."
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Where is the bicycle?"}],
                                       extra_body={"context": doc, "kv_policy": "snapkv", "kv_budget": 0.5,
                                                   "query_aware": False, "keep_context": True})
    cid = (r.model_extra or {}).get("context_id", "")
    r2 = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Where does the cat sleep?"}],
                                        extra_body={"context_id": cid})
    check(cid.startswith("ctx-") and "sofa" in r2.choices[0].message.content and
          r2.model_extra["timings"]["prefill_s"] == 0,
          f"a kept context answers a second question without prefill: {r2.choices[0].message.content!r}")

    c = client.completions.create(model=model, prompt="The capital of France is", max_tokens=4)
    check(c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 4,
          f"completion: {c.choices[0].text!r}")

    try:
        client.chat.completions.create(model=model, messages=q, temperature="warm")
        check(False, "a wrong-typed temperature raises BadRequestError")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "temperature" in str(e), f"BadRequestError: {e}")
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "word " * 9000}])
        check(False, "a prompt over the context raises BadRequestError")
    except openai.BadRequestError as e:
        check(e.code == "context_length_exceeded", f"BadRequestError (context): {e.code}")
    try:
        client.chat.completions.create(model="gpt-4o", messages=q)
        check(False, "another model raises NotFoundError")
    except openai.NotFoundError as e:
        check(e.status_code == 404, f"NotFoundError: {e}")

    time.sleep(0.6)  # the coordinator's view is refreshed every 0.5 s
    after = scrape(port)
    ok = {"endpoint": "chat.completions", "outcome": "ok"}
    moved = value(after, "tis_http_requests", "tis_http_requests_total", **ok) - \
        value(before, "tis_http_requests", "tis_http_requests_total", **ok)
    check(moved == 5, f"chat requests ok moved by {moved} (5 sent)")
    bad = {"endpoint": "chat.completions", "outcome": "bad_request"}
    check(value(after, "tis_http_requests", "tis_http_requests_total", **bad) == 2, "bad requests counted: 2")
    n = value(after, "tis_stage_seconds", "tis_stage_seconds_count", stage="ttft")
    check(n == 6, f"ttft histogram count {n} (6 replies)")
    inf = value(after, "tis_stage_seconds", "tis_stage_seconds_bucket", stage="total", le="+Inf")
    check(inf == 6, "total histogram +Inf bucket == count")
    gen = value(after, "tis_generated_tokens", "tis_generated_tokens_total")
    check(gen >= 4 + 3 * 3, f"generated tokens counted: {gen}")
    hb = value(after, "tis_kv_handoff_bytes", "tis_kv_handoff_bytes_total") - \
        value(before, "tis_kv_handoff_bytes", "tis_kv_handoff_bytes_total")
    check(hb > 0, f"KV bytes handed over moved by {hb:.0f}")
    ratio = value(after, "tis_kv_compression_ratio", "tis_kv_compression_ratio_count")
    check(ratio == 6, f"compression ratio histogram count {ratio}")
    check(value(after, "tis_workers_alive", "tis_workers_alive", role="decode") == 1 and
          value(after, "tis_workers_alive", "tis_workers_alive", role="prefill") == 1, "workers alive per role")
    check(value(after, "tis_queue_depth", "tis_queue_depth", role="decode", state="waiting") == 0,
          "queue depth per role")
    check(value(after, "tis_kept_contexts", "tis_kept_contexts") == 1, "one kept context")
    n = value(after, "tis_stage_seconds", "tis_stage_seconds_count", stage="compress")
    check(n == 6, f"compress stage histogram count {n}")


if __name__ == "__main__":
    sys.exit(main())
