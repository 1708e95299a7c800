"""`python -m plane up|down|status` (with e2e/ on sys.path, as the Makefile runs it)."""

from __future__ import annotations

import argparse
import sys
import time

from . import GPU_RESOURCE, Plane, PlaneError, binary_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plane",
                                     description="The local Kubernetes plane of the e2e tests and `make demo`.")
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    plane = Plane()
    cfg = plane.cfg
    if args.command == "up":
        start = time.monotonic()
        try:
            started = plane.up()
        except PlaneError as err:
            print(f"Control plane failed to start: {err}", file=sys.stderr)
            return 1
        took = time.monotonic() - start
        print(f"Control plane {'up' if started else 'already up'} in {took:.1f} s "
              f"({cfg.nodes} kwok nodes with {cfg.gpus_per_node} {GPU_RESOURCE} each"
              + (f"; real node {cfg.node_name} at {cfg.node_ip}" if cfg.real_node else "") + ")")
        kubectl = binary_path("kubectl")
        if cfg.autoscaling:
            print(f"Prometheus at {cfg.prometheus_url}; KEDA serves external.metrics.k8s.io")
        print(f"Use it with:\n  export KUBECONFIG={cfg.kubeconfig}\n  {kubectl} get nodes\n"
              f"Audit log: {cfg.audit_log}\nStop it with: make cluster-down")
        return 0
    if args.command == "down":
        start = time.monotonic()
        try:
            plane.down()
        except PlaneError as err:
            print(f"Stopping the plane failed: {err}", file=sys.stderr)
            return 1
        print(f"Down in {time.monotonic() - start:.1f} s")
        return 0
    return plane.status()


if __name__ == "__main__":
    sys.exit(main())
