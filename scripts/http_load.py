#!/usr/bin/env python3
"""Load test of `tis serve --http` from a second process (stdlib asyncio,
HTTP/1.1 over raw sockets: no client library in the way).

Starts `tis serve --http 127.0.0.1:0` with the workers asked for, then for
each concurrency sends the same number of short-context chat completions
(each connection one request at a time, keep-alive) and measures
requests/s, latency percentiles and errors. With --kill_decode, a last run
kills one decode worker (SIGKILL, by its pid) once a share of its requests
are answered: every request must still get exactly one answer (a reply or
a clear error), and the coordinator must count exactly as many replies as
the clients received (no request answered twice).

  scripts/http_load.py --bin build/tis --decode 2 --concurrency 1 2 4 8 16 \\
      --requests 64 --kill_decode --out docs/results/pipeline/http_load

writes OUT.md (table + command) and OUT.csv (one row per request).
"""
import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

# Short contexts (tens of tokens) with a question each: answers are checked.
DOCS = [
    ("The Loire is the longest river in France. Paris lies on the Seine.", "Which river flows through Paris?",
     "Seine"),
    ("Marie keeps her bicycle in the blue shed behind the bakery.", "Where does Marie keep her bicycle?", "shed"),
    ("The meeting moved from Tuesday to Thursday because the room was booked.", "On which day is the meeting now?",
     "Thursday"),
    ("Oslo is the capital of Norway and Stockholm is the capital of Sweden.", "What is the capital of Norway?",
     "Oslo"),
]


def body(i, max_tokens, policy, budget):
    ctx, q, _ = DOCS[i % len(DOCS)]
    return json.dumps({"messages": [{"role": "user", "content": f"{ctx}\n\n{q}"}], "max_tokens": max_tokens,
                       "kv_policy": policy, "kv_budget": budget}).encode()


async def one_conn(port, ids, bodies, results, t0):
    """One keep-alive connection sending its requests one after another."""
    reader = writer = None
    for i in ids:
        start = time.monotonic()
        status, text = -1, ""
        for attempt in range(2):  # a connection the server closed is reopened once
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                b = bodies[i]
                writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(b)}\r\n\r\n".encode() + b)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                m = re.search(rb"(?i)content-length: *(\d+)", head)
                text = (await reader.readexactly(int(m.group(1)))).decode() if m else ""
                if re.search(rb"(?i)connection: *close", head):
                    writer.close()
                    writer = None
                break
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                if writer:
                    writer.close()
                writer = None
                status, text = -1, f"connection: {e!r}"
        results.append({"i": i, "status": status, "start_s": start - t0, "latency_s": time.monotonic() - start,
                        "text": text})
    if writer:
        writer.close()


async def run_level(port, conc, n, bodies, on_progress=None):
    results, t0 = [], time.monotonic()
    ids = [list(range(k, n, conc)) for k in range(conc)]
    tasks = [asyncio.create_task(one_conn(port, ids[k], bodies, results, t0)) for k in range(conc)]
    if on_progress:
        tasks.append(asyncio.create_task(on_progress(results)))
    await asyncio.gather(*tasks)
    return results, time.monotonic() - t0


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(q * len(v) + 0.999999) - 1))] if v else float("nan")


def summarize(conc, results, wall, label=""):
    ok = [r for r in results if r["status"] == 200]
    lat = [r["latency_s"] for r in ok]
    correct = 0
    for r in ok:
        ans = json.loads(r["text"])["choices"][0]["message"]["content"]
        correct += DOCS[r["i"] % len(DOCS)][2].lower() in ans.lower()
    errs = {}
    for r in results:
        if r["status"] != 200:
            errs[r["status"]] = errs.get(r["status"], 0) + 1
    return {"run": label or f"c{conc}", "concurrency": conc, "requests": len(results), "ok": len(ok),
            "correct": correct, "errors": " ".join(f"{k}x{v}" for k, v in sorted(errs.items())) or "0",
            "rps": len(ok) / wall if wall else 0, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat or [0]),
            "wall": wall}


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def start(args, tmp):
    log = open(os.path.join(tmp, "serve.log"), "w+")
    cmd = [args.bin, "serve", "--front", f"ipc://{tmp}/f", "--back", f"ipc://{tmp}/b", "--prefill", str(args.prefill),
           "--decode", str(args.decode), "--decode_batch", str(args.decode_batch), "--max_queue", str(args.max_queue),
           "--heartbeat_ms", "250", "--http", "127.0.0.1:0"]
    if args.model:
        cmd += ["-m", args.model]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    port = None
    for _ in range(600):
        time.sleep(0.1)
        log.seek(0)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
        if m and port is None:
            port = int(m.group(1))
        if port:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        return proc, port, log
            except OSError:
                pass
    proc.kill()
    sys.exit("http_load: the server did not become ready")


def decode_pids(server_pid):
    out = subprocess.run(["ps", "--ppid", str(server_pid), "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [int(l.split()[0]) for l in out.splitlines() if "--role decode" in l]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/tis")
    ap.add_argument("--model", default=None)
    ap.add_argument("--prefill", type=int, default=1)
    ap.add_argument("--decode", type=int, default=2)
    ap.add_argument("--decode_batch", type=int, default=8)
    ap.add_argument("--max_queue", type=int, default=256)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--requests", type=int, default=64, help="per concurrency")
    ap.add_argument("--max_tokens", type=int, default=16)
    ap.add_argument("--policy", default="snapkv")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--kill_decode", action="store_true", help="a last run with one decode worker killed mid-run")
    ap.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tis-load-")
    proc, port, log = start(args, tmp)
    rows, all_results = [], []
    try:
        bodies = [body(i, args.max_tokens, args.policy, args.budget) for i in range(args.requests)]
        asyncio.run(run_level(port, 1, 4, bodies))  # warm-up, not counted
        m0 = metrics(port)
        for c in args.concurrency:
            res, wall = asyncio.run(run_level(port, c, args.requests, bodies))
            rows.append(summarize(c, res, wall))
            all_results += [dict(r, run=f"c{c}") for r in res]
            print(rows[-1], flush=True)
        if args.kill_decode:
            rows.append(kill_run(args, proc, port, bodies, all_results))
        m1 = metrics(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    replies = m1["tis_coordinator_replies_total"] - m0["tis_coordinator_replies_total"]
    got = sum(r["status"] == 200 for r in all_results)
    retried = m1["tis_coordinator_retried_total"] - m0["tis_coordinator_retried_total"]
    check = (f"coordinator replies during the runs: {replies:.0f}; 200 answers the clients received: {got}; "
             f"requests sent: {len(all_results)}, answered (any status): {sum(r['status'] > 0 for r in all_results)}; "
             f"jobs the coordinator sent again after a worker was lost: {retried:.0f}")
    print(check)
    if args.out:
        write(args, rows, all_results, check)
    return 0 if replies == got else 1


def kill_run(args, proc, port, bodies, all_results):
    """The largest concurrency again, with answers of up to 6x the tokens (so that the decode workers
    hold requests most of the time); one decode worker SIGKILLed once 30 % are answered."""
    c = max(args.concurrency)
    bodies = [body(i, 6 * args.max_tokens, args.policy, args.budget) for i in range(args.requests)]
    pids = decode_pids(proc.pid)
    killed = []

    async def killer(results):
        while len(results) < 0.3 * args.requests:
            await asyncio.sleep(0.05)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append((pids[0], len(results)))

    res, wall = asyncio.run(run_level(port, c, args.requests, bodies, killer))
    row = summarize(c, res, wall, label=f"c{c}, max_tokens {6 * args.max_tokens}, decode worker killed")
    all_results += [dict(r, run="kill") for r in res]
    ids = sorted(r["i"] for r in res)
    row["note"] = (f"killed pid {killed[0][0]} after {killed[0][1]} answers; " if killed else "nothing killed; ") + \
        f"answers per request: {'all exactly 1' if ids == list(range(args.requests)) else 'NOT exactly 1'}"
    print(row, flush=True)
    return row


def write(args, rows, results, check):
    with open(args.out + ".csv", "w") as f:
        f.write("run,i,status,start_s,latency_s\n")
        for r in results:
            f.write(f"{r['run']},{r['i']},{r['status']},{r['start_s']:.4f},{r['latency_s']:.4f}\n")
    cmd = " ".join(["scripts/http_load.py"] + sys.argv[1:])
    lines = [f"# HTTP front under load", "", f"Command: `{cmd}`", "",
             f"{args.prefill} prefill + {args.decode} decode workers (decode batch {args.decode_batch}), "
             f"chat completions of {len(DOCS)} short contexts (~40 prompt tokens), max_tokens {args.max_tokens}, "
             f"{args.policy} at budget {args.budget}; {args.requests} requests per run, each connection one at a "
             f"time (keep-alive). Latency: request sent to whole answer read, seconds.", "",
             "| run | concurrency | requests | 200 | correct | errors | req/s | p50 s | p99 s | max s |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['concurrency']} | {r['requests']} | {r['ok']} | {r['correct']} | "
                     f"{r['errors']} | {r['rps']:.2f} | {r['p50']:.3f} | {r['p99']:.3f} | {r['max']:.3f} |")
    lines += [""] + [f"- {r['run']}: {r['note']}" for r in rows if "note" in r] + ["", check, ""]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
