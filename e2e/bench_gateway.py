"""`make bench-gateway`: what an LLMGateway adds to a request, and what prefix-aware routing gains.

    .venv/bin/python e2e/bench_gateway.py [--requests 32] [--prompts 6] [--questions 8]

Runs on `make demo`'s stack (namespace demo: the CPU RAG stack and LLMGateway `shared`, which is
PrefixAware). For the run it gives the chat role a second replica and adds a second gateway,
`round-robin`, over the same models; it removes both afterwards. It prints:

- latency: p50 and p99 of a one-token chat request sent to the chat Service directly and through
  the gateway, at concurrency 1, 4 and 8 (each request's prompt starts differently, so vLLM's
  prefix cache helps neither path); the difference is what the gateway adds;
- prefix: a shared-prefix workload (a few system prompts of about 1,000 tokens, several questions each, in mixed
  order) through each gateway: vLLM's own prefix-cache hit rate over both replicas
  (`vllm:prefix_cache_hits_total` / `vllm:prefix_cache_queries_total`) and the time to first token.
  Each policy gets system prompts of its own, so neither finds the other's in the cache.

Bounded: a few hundred requests in all, to ClusterIPs on this machine only. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo
import plane
import serving
from operator_process import eventually

NAMESPACE, STACK, CHAT_ROLE = demo.NAMESPACE, "cpu-rag", "llm"
ROUND_ROBIN = "round-robin"
WORDS = ("gpu node cache model weights tensor replica router prefix token latency queue memory kernel batch "
         "shard volume service endpoint cluster scheduler kubelet container image download mirror hub").split()


def kubectl(cfg, *args, **kwargs):
    return demo.kubectl(cfg, "-n", NAMESPACE, *args, **kwargs)


def get(cfg, kind, name):
    result = kubectl(cfg, "get", kind, name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def cluster_url(cfg, service: str) -> str:
    spec = get(cfg, "service", service)["spec"]
    return f"http://{spec['clusterIP']}:{spec['ports'][0]['port']}"


def chat_pods(cfg) -> list[dict]:
    out = kubectl(cfg, "get", "pods", "-l", f"llmops.dev/deployment={STACK},llmops.dev/role={CHAT_ROLE}", "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def counter(pod: dict, name: str) -> float:
    text = serving.get_text(f"http://{pod['status']['podIP']}:8000/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def prefix_counters(pods: list[dict]) -> tuple[float, float]:
    return (sum(counter(p, "vllm:prefix_cache_hits_total") for p in pods),
            sum(counter(p, "vllm:prefix_cache_queries_total") for p in pods))


def post(url: str, key: str, body: dict, stream: bool = False) -> tuple[float, float]:
    """(seconds to the first token, seconds to the end) of one chat request; raises on an error."""
    request = urllib.request.Request(url + "/v1/chat/completions", method="POST",
                                     data=json.dumps({**body, "stream": stream}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    started = time.perf_counter()
    first = None
    with urllib.request.urlopen(request, timeout=120) as response:
        if not stream:
            response.read()
        else:
            for line in response:
                if first is None and line.startswith(b"data: ") and b'"content":"' in line:
                    first = time.perf_counter() - started
    end = time.perf_counter() - started
    return (first if first is not None else end), end


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency_table(cfg, served: str, requests: int) -> list[tuple]:
    direct = (cluster_url(cfg, f"{STACK}-{CHAT_ROLE}"), demo.API_KEY)
    gateway = (cluster_url(cfg, "shared-gateway"), demo.GATEWAY_KEY)
    rows = []
    for concurrency in (1, 4, 8):
        row = [concurrency]
        for url, key in (direct, gateway):
            bodies = [{"model": served, "max_tokens": 1,
                       "messages": [{"role": "user", "content": f"{random.random()} {' '.join(random.choices(WORDS, k=20))}"}]}
                      for _ in range(requests)]
            with ThreadPoolExecutor(concurrency) as pool:
                totals = [end for _, end in pool.map(partial(post, url, key), bodies)]
            row += [percentile(totals, 50), percentile(totals, 99)]
        rows.append(tuple(row))
    return rows


def prefix_run(cfg, url: str, served: str, prompts: int, questions: int, seed: int) -> tuple[float, float, float]:
    """(prefix-cache hit rate, TTFT p50, TTFT p99) of the shared-prefix workload through one gateway."""
    rng = random.Random(seed)
    systems = [f"Context {seed}-{i}: " + " ".join(rng.choices(WORDS, k=300)) for i in range(prompts)]
    bodies = [{"model": served, "max_tokens": 4,
               "messages": [{"role": "system", "content": system},
                            {"role": "user", "content": f"Question {q}: " + " ".join(rng.choices(WORDS, k=8))}]}
              for system in systems for q in range(questions)]
    rng.shuffle(bodies)
    pods = chat_pods(cfg)
    hits, queries = prefix_counters(pods)
    with ThreadPoolExecutor(4) as pool:
        ttfts = [first for first, _ in pool.map(lambda body: post(url, demo.GATEWAY_KEY, body, stream=True), bodies)]
    hits_after, queries_after = prefix_counters(pods)
    rate = (hits_after - hits) / (queries_after - queries) if queries_after > queries else float("nan")
    return rate, percentile(ttfts, 50), percentile(ttfts, 99)


def set_up(cfg) -> str:
    """The demo's stack with two chat replicas and a round-robin gateway; returns the chat model's name."""
    stack = get(cfg, "llmd", STACK)
    if stack is None or get(cfg, "llmgw", "shared") is None:
        sys.exit("Run `make demo` first: the benchmark uses its stack and its LLMGateway")
    kubectl(cfg, "patch", "llmd", STACK, "--type=merge", "-p", json.dumps({"spec": {CHAT_ROLE: {"replicas": 2}}}))
    gateway = serving.gateway_on_real_node(demo.GATEWAY_LABEL)
    gateway["metadata"]["name"], gateway["spec"]["policy"] = ROUND_ROBIN, "RoundRobin"
    kubectl(cfg, "apply", "-f", "-", input=yaml.safe_dump(gateway))
    print("Waiting for a second chat replica and the round-robin gateway ...", flush=True)
    eventually(lambda: ((get(cfg, "llmd", STACK).get("status") or {}).get("roles", {})
                        .get(CHAT_ROLE, {}).get("readyReplicas") == 2), 900, interval=2, what="two ready chat replicas")
    for name in ("shared", ROUND_ROBIN):
        kubectl(cfg, "wait", "--for=condition=Ready", f"llmgw/{name}", "--timeout=300s", timeout=330)
    return get(cfg, "llmd", STACK)["status"]["roles"][CHAT_ROLE]["servedName"]


def tear_down(cfg) -> None:
    kubectl(cfg, "delete", "llmgw", ROUND_ROBIN, "--ignore-not-found", check=False)
    kubectl(cfg, "patch", "llmd", STACK, "--type=merge", "-p", json.dumps({"spec": {CHAT_ROLE: {"replicas": None}}}),
            check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per path and concurrency level")
    parser.add_argument("--prompts", type=int, default=6, help="system prompts per policy")
    parser.add_argument("--questions", type=int, default=8, help="questions per system prompt")
    args = parser.parse_args()
    cfg = plane.Config.from_env()
    served = set_up(cfg)
    try:
        # The routers add a pod the moment it is ready; one round of warm-up requests on each path.
        for url in (cluster_url(cfg, "shared-gateway"), cluster_url(cfg, f"{ROUND_ROBIN}-gateway")):
            eventually(lambda url=url: post(url, demo.GATEWAY_KEY, {"model": served, "max_tokens": 1,
                                                                    "messages": [{"role": "user", "content": "hi"}]}),
                       60, interval=1, what="an answer through each gateway")
        latency = latency_table(cfg, served, args.requests)
        prefix = {policy: prefix_run(cfg, cluster_url(cfg, service), served, args.prompts, args.questions, seed)
                  for seed, (policy, service) in enumerate((("PrefixAware", "shared-gateway"),
                                                            ("RoundRobin", f"{ROUND_ROBIN}-gateway")))}
    finally:
        tear_down(cfg)
    print(f"\nLatency of a one-token chat request, {args.requests} per row and path (seconds):")
    print("| concurrency | Service p50 | Service p99 | gateway p50 | gateway p99 | added p50 | added p99 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c, d50, d99, g50, g99 in latency:
        print(f"| {c} | {d50:.3f} | {d99:.3f} | {g50:.3f} | {g99:.3f} | {g50 - d50:+.3f} | {g99 - d99:+.3f} |")
    print(f"\nShared-prefix workload, 2 chat replicas: {args.prompts} system prompts x {args.questions} questions, "
          "4 at a time, per policy:")
    print("| policy | prefix-cache hit rate | TTFT p50 s | TTFT p99 s |")
    print("| --- | --- | --- | --- |")
    for policy, (rate, p50, p99) in prefix.items():
        print(f"| {policy} | {rate:.1%} | {p50:.3f} | {p99:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
