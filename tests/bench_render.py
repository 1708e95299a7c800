"""Render cost: the pure renderer on every example, as a reconcile calls it.

    .venv/bin/python tests/bench_render.py [--seconds 2]

Not a test (pytest does not collect it): it prints, per example, the median time of one
`render()` of an already-parsed resource (what each reconcile pays), and of the parse that
precedes it when the resource is read.

Measured 2026-11-24 on the project machine (2 CPUs, Python 3.11), after the renderer stopped
writing YAML with Jinja2 and parsing it back: RAG stack 0.53 ms (was 51 ms), minimal 0.16 ms
(was 19 ms). About 40 % of it is the JSON encoding behind the rendered-hash annotation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml

from llm_operator.api import parse_llmdeployment
from llm_operator.render import render

EXAMPLES = [path for path in sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
            if yaml.safe_load(path.read_text()).get("kind") == "LLMDeployment"]


def per_call_ms(call, seconds: float) -> float:
    """Median over batches of the time of one call, in milliseconds."""
    batch, samples, deadline = 50, [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        started = time.perf_counter()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter() - started) / batch * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per example and figure")
    seconds = parser.parse_args().seconds
    print(f"{'example':<24} {'render ms':>10} {'parse ms':>10}")
    for path in EXAMPLES:
        raw = yaml.safe_load(path.read_text())
        raw["metadata"].update(namespace="bench", uid="00000000-0000-0000-0000-000000000000")
        llmd = parse_llmdeployment(raw)
        render_ms = per_call_ms(lambda llmd=llmd: render(llmd), seconds)
        parse_ms = per_call_ms(lambda raw=raw: parse_llmdeployment(raw), seconds)
        print(f"{path.stem:<24} {render_ms:>10.3f} {parse_ms:>10.3f}")


if __name__ == "__main__":
    main()
