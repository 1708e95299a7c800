"""`llm-operator`: render (offline), crd, version, and run (the operator)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import yaml

from llm_runtime.versions import (
    CHAT_PAGE_IMAGE,
    GATEWAY_IMAGE,
    OPERATOR_VERSION,
    RUNTIME_CPU_IMAGE,
    RUNTIME_IMAGE,
    VLLM_VERSION,
)

from .api import KIND, InvalidSpec, parse_llmdeployment
from .api.crd import KINDS, crd_yaml
from .api.llmbatch import BATCH_KIND, LLMBatch
from .api.llmdeployment import LLMDeployment
from .api.llmgateway import GATEWAY_KIND, LLMGateway
from .api.validation import parse
from .render import RenderConfig, render, render_gateway
from .render.batch import render_batch
from .render.config import DEFAULT_GPU_RESOURCE
from .render.gateway.routes import routes_of, selects

EXIT_INVALID = 2


def _documents(paths: Iterable[str], stdin: TextIO) -> Iterable[tuple[str, Any]]:
    for path in paths:
        if path == "-":
            text = stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        for document in yaml.safe_load_all(text):
            if document is not None:
                yield path, document


def _dump(objects: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(obj, sort_keys=False, width=120) for obj in objects)


def render_config(args: argparse.Namespace) -> RenderConfig:
    """The same RenderConfig for `render` and `run`: their shared flags mean the same objects."""
    endpoints = {scheme: url for scheme, url in (("modelscope", args.modelscope_endpoint), ("hf", args.hf_endpoint)) if url}
    return RenderConfig(image=args.image or RUNTIME_IMAGE, cpu_image=args.cpu_image or RUNTIME_CPU_IMAGE,
                        gateway_image=args.gateway_image or GATEWAY_IMAGE,
                        chat_page_image=args.chat_page_image or CHAT_PAGE_IMAGE,
                        gpu_resource=args.gpu_resource, hub_endpoints=endpoints,
                        prometheus_url=args.prometheus_url)


def _namespace(obj: Any) -> str:
    return obj.metadata.namespace or "default"


def render_documents(documents: list[tuple[str, Any]], config: RenderConfig, stderr: TextIO) -> list[dict[str, Any]] | None:
    """Every kind, as the operator renders it. An LLMGateway routes to the LLMDeployments among the
    same documents that it selects; the Services' cluster IPs are unknown here, so routes that go to
    a Service show as not ready yet, and its chat page's Deployment (which needs the gateway's own
    address) is left out. None, after one line per invalid document on `stderr`."""
    output: list[dict[str, Any]] = []
    llmds: list[LLMDeployment] = []
    gateways: list[LLMGateway] = []
    failed = False
    for path, document in documents:
        kind = document.get("kind") if isinstance(document, dict) else None
        try:
            if kind == GATEWAY_KIND:
                gateways.append(parse(LLMGateway, document))
            elif kind == BATCH_KIND:
                output += render_batch(parse(LLMBatch, document), config)
            else:
                llmd = parse_llmdeployment(document)
                llmds.append(llmd)
                output += render(llmd, config)
        except InvalidSpec as error:
            failed = True
            print(f"error: {path}: {error}", file=stderr)
    for gateway in gateways:
        selected = [llmd for llmd in llmds if _namespace(llmd) == _namespace(gateway)
                    and selects(gateway, llmd.metadata.labels)]
        routes, _, _ = routes_of(gateway, selected)
        output += render_gateway(gateway, routes, config)
    return None if failed else output


def cmd_render(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    config = render_config(args)
    try:
        documents = list(_documents(args.filenames, stdin))
    except (OSError, yaml.YAMLError) as error:
        print(f"error: {error}", file=stderr)
        return EXIT_INVALID
    output = render_documents(documents, config, stderr)
    if output is None:
        return EXIT_INVALID
    stdout.write(_dump(output))
    return 0


def cmd_crd(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    stdout.write(crd_yaml(args.kind))
    return 0


def cmd_version(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    stdout.write(f"llm-operator {OPERATOR_VERSION} (vLLM {VLLM_VERSION}, runtime image {RUNTIME_IMAGE})\n")
    return 0


def cmd_run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """Run the operator until interrupted. Imports kopf only here: render/crd need no cluster libraries."""
    import logging

    import kopf
    from prometheus_client import start_http_server

    from . import handlers
    from .k8s import Kube, load_config

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    if not args.verbose:
        # One line per watch event and per health probe drowns the lines that say what changed.
        for noisy in ("kubernetes", "kopf.objects", "aiohttp.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    config = render_config(args)
    kube = Kube(load_config(args.kubeconfig), reads_pod_logs=args.read_pod_logs)
    memo = handlers.OperatorContext(kube=kube, config=config, kubeconfig=args.kubeconfig,
                                    lease_namespace=args.leader_election_namespace or _own_namespace(),
                                    namespaces=tuple(args.namespaces),
                                    lease_name=args.leader_election_id, lease_seconds=args.lease_seconds,
                                    workers=args.workers, resync_seconds=args.resync_seconds,
                                    watch_stall_seconds=args.watch_stall_seconds,
                                    crd_wait_seconds=args.crd_wait_seconds)
    metrics_host, metrics_port = args.metrics_address.rsplit(":", 1)
    start_http_server(int(metrics_port), addr=metrics_host)
    health_host, health_port = args.health_address.rsplit(":", 1)
    kopf.run(
        memo=memo,
        standalone=True,  # no kopf peering: a Lease elects the one process that writes (handlers/leader.py)
        clusterwide=not args.namespaces,
        namespaces=args.namespaces or (),
        liveness_endpoint=f"http://{health_host}:{health_port}/healthz",
    )
    return 0


def _add_render_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that change what is rendered: `render` takes every one `run` takes, so that
    `render -f X` with the operator's flags prints exactly what the operator applies."""
    parser.add_argument("--image", help=f"default runtime image (default {RUNTIME_IMAGE})")
    parser.add_argument("--cpu-image", help=f"runtime image of device CPU roles (default {RUNTIME_CPU_IMAGE})")
    parser.add_argument("--gateway-image", help=f"image of LLMGateways (default {GATEWAY_IMAGE})")
    parser.add_argument("--chat-page-image", help=f"image of LLMGateways' chat pages (default {CHAT_PAGE_IMAGE})")
    parser.add_argument("--gpu-resource", default=DEFAULT_GPU_RESOURCE, help="GPU extended resource name")
    parser.add_argument("--modelscope-endpoint", help="ModelScope mirror handed to download init containers")
    parser.add_argument("--hf-endpoint", help="Hugging Face mirror handed to download init containers")
    parser.add_argument("--prometheus-url", default=RenderConfig.prometheus_url,
                        help="Prometheus that KEDA ScaledObjects query for vLLM metrics (default %(default)s)")


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _own_namespace() -> str:
    """Where the leader-election Lease lives by default: the pod's namespace (POD_NAMESPACE from the
    downward API, else the ServiceAccount's), or `default` outside a cluster."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return "default"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    render_parser = commands.add_parser("render", help="print the objects LLMDeployments, LLMGateways and LLMBatches become (no cluster needed)")
    render_parser.add_argument("-f", "--filename", dest="filenames", action="append", required=True,
                               help="YAML file of LLMDeployments, LLMGateways and LLMBatches ('-' for stdin); repeatable")
    _add_render_flags(render_parser)
    render_parser.set_defaults(func=cmd_render)

    run_parser = commands.add_parser("run", help="run the operator against the current cluster")
    run_parser.add_argument("--namespace", dest="namespaces", action="append", default=[],
                            help="watch only this namespace (repeatable); default: all namespaces")
    run_parser.add_argument("--kubeconfig", help="kubeconfig file; wins over the in-cluster ServiceAccount "
                            "(default: in-cluster, then KUBECONFIG)")
    _add_render_flags(run_parser)
    run_parser.add_argument("--metrics-address", default="0.0.0.0:9090", help="host:port of /metrics")
    run_parser.add_argument("--health-address", default="0.0.0.0:8080", help="host:port of /healthz")
    run_parser.add_argument("--workers", type=int, default=8, help="reconciles running at once (default 8)")
    run_parser.add_argument("--leader-election-namespace",
                            help="namespace of the Lease that elects the one writing process "
                                 "(default: the pod's namespace, or `default` outside a cluster)")
    run_parser.add_argument("--leader-election-id", default="llm-operator",
                            help="name of that Lease: processes sharing it take turns, never write together")
    run_parser.add_argument("--lease-seconds", type=int, default=15,
                            help="how long a follower waits for a silent leader before taking over")
    run_parser.add_argument("--resync-seconds", type=float, default=300.0, help="reconcile every object this often")
    run_parser.add_argument("--watch-stall-seconds", type=float, default=90.0,
                            help="reopen a watch that delivered nothing, not even the API server's "
                                 "once-a-minute bookmark, for this long (a connection a proxy stalled)")
    run_parser.add_argument("--crd-wait-seconds", type=float, default=60.0,
                            help="how long to wait at start for the LLMDeployment CRD before exiting")
    run_parser.add_argument("--read-pod-logs", action="store_true",
                            help="read the log heads of model pods (whether a start reused compiled files) and the "
                                 "log tails of running batch pods (progress); needs pods/log get")
    run_parser.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    run_parser.add_argument("-v", "--verbose", action="store_true")
    run_parser.set_defaults(func=cmd_run)

    crd_parser = commands.add_parser("crd", help="print a CRD (LLMDeployment by default)")
    crd_parser.add_argument("--kind", choices=sorted(KINDS), default=KIND)
    crd_parser.set_defaults(func=cmd_crd)
    commands.add_parser("version", help="print versions").set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr,
         stdin: TextIO = sys.stdin) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args, stdout, stderr, stdin)


if __name__ == "__main__":
    sys.exit(main())
