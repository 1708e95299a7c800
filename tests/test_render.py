"""Behaviour of the renderer, one rule per test."""

import io
import json

import yaml

from llm_operator.api import parse_llmdeployment
from llm_operator.cli import main
from llm_operator.names import HASH_ANNOTATION
from llm_operator.render import RenderConfig, content_hash, render, service_url
from llm_runtime.cli import build_parser
from support import by_kind_and_name, container, llmd, load_example

HF = {"source": "hf://BAAI/bge-m3"}


def rendered(spec, **metadata):
    return by_kind_and_name(render(llmd(spec, **metadata)))


def test_rag_stack_from_the_cli():
    out = io.StringIO()
    assert main(["render", "-f", "examples/rag-stack.yaml"], stdout=out, stderr=io.StringIO()) == 0
    objects = [o for o in yaml.safe_load_all(out.getvalue()) if o]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment"] * 3 + ["PersistentVolumeClaim"] + ["Service"] * 3
    named = by_kind_and_name(objects)
    for role in ("embedding", "rerank"):
        args = container(named[("Deployment", f"rag-stack-{role}")])["args"]
        assert args[args.index("--runner") + 1] == "pooling"
    llm_args = container(named[("Deployment", "rag-stack-llm")])["args"]
    assert {"--tool-call-parser", "--enable-auto-tool-choice", "--reasoning-parser"} <= set(llm_args)
    text = out.getvalue()
    assert "--task" not in text and "--enable-reasoning" not in text


def test_api_key_is_only_a_secret_reference():
    spec = load_example("rag-stack.yaml")["spec"]
    for obj in render(parse_llmdeployment(load_example("rag-stack.yaml"))):
        text = json.dumps(obj)
        assert "--api-key" not in text
        if obj["kind"] == "Deployment":
            (env,) = [e for e in container(obj)["env"] if e["name"] == "VLLM_API_KEY"]
            assert env == {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": spec["apiKeySecretRef"]}}


def test_hub_tokens_go_only_to_the_downloader_by_reference():
    objects = rendered({"llm": {"model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"}},
                        "credentialsSecretRef": {"name": "hub-tokens"}})
    deployment = objects[("Deployment", "test-llm")]
    download_env = {e["name"]: e for e in container(deployment, "model-download")["env"]}
    assert download_env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hub-tokens", "key": "HF_TOKEN", "optional": True}
    assert "value" not in download_env["HF_TOKEN"]
    assert not {"HF_TOKEN", "MODELSCOPE_API_TOKEN"} & {e["name"] for e in container(deployment)["env"]}
    # The Secret's name, so that the downloader can say it is missing (its keys are optional).
    assert download_env["LLMOPS_CREDENTIALS_SECRET"] == {"name": "LLMOPS_CREDENTIALS_SECRET", "value": "hub-tokens"}


def test_parallelism_defaults_and_gpu_limits():
    deployment = rendered({"llm": {"model": {"source": "hf://Qwen/Qwen2.5-72B-Instruct"}, "gpus": 8,
                                   "pipelineParallelSize": 2}})[("Deployment", "test-llm")]
    vllm = container(deployment)
    args = vllm["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--pipeline-parallel-size") + 1] == "2"
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "8"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_gpu_resource_name_sets_limits_and_toleration():
    deployment = rendered({"llm": {"model": HF, "gpuResourceName": "amd.com/gpu"}})[("Deployment", "test-llm")]
    assert container(deployment)["resources"]["limits"] == {"amd.com/gpu": "1"}
    assert deployment["spec"]["template"]["spec"]["tolerations"][0]["key"] == "amd.com/gpu"


def test_pooling_roles_run_with_pooling_runner_and_convert():
    objects = rendered({"embedding": {"model": {"source": "modelscope://iic/gte_Qwen2-1.5B-instruct"},
                                      "engine": {"convert": "embed"}},
                        "rerank": {"model": {"source": "hf://BAAI/bge-reranker-v2-m3"}}})
    embed_args = container(objects[("Deployment", "test-embedding")])["args"]
    assert embed_args[embed_args.index("--runner") + 1] == "pooling"
    assert embed_args[embed_args.index("--convert") + 1] == "embed"
    assert "--convert" not in container(objects[("Deployment", "test-rerank")])["args"]


def downloader_args(init_container):
    """The init container's arguments as `llm-runtime` itself parses them."""
    assert init_container["command"] == ["llm-runtime", "download"]
    return build_parser().parse_args(["download", *init_container["args"]])


def test_gguf_file_is_served_by_path_and_downloaded_alone():
    deployment = render(parse_llmdeployment(load_example("gguf-single-file.yaml")))[0]
    assert container(deployment)["args"][0] == (
        "/models/modelscope/Qwen/Qwen2.5-1.5B-Instruct-GGUF/master/qwen2.5-1.5b-instruct-q4_k_m.gguf"
    )
    download = downloader_args(container(deployment, "model-download"))
    assert download.file == "qwen2.5-1.5b-instruct-q4_k_m.gguf"


def test_pvc_source_mounts_the_claim_read_only_and_only_checks():
    deployment = render(parse_llmdeployment(load_example("model-on-pvc.yaml")))[0]
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["model-check"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    assert container(deployment)["args"][0] == "/models/llama-3.1-8b-instruct"


def test_cache_claim_is_shared_and_emptydir_without_cache():
    with_cache = rendered({"llm": {"model": HF}, "embedding": {"model": HF}, "cache": {"size": "50Gi"}})
    claim = with_cache[("PersistentVolumeClaim", "test-cache")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for role in ("llm", "embedding"):
        volumes = with_cache[("Deployment", f"test-{role}")]["spec"]["template"]["spec"]["volumes"]
        assert volumes[0] == {"name": "model-cache", "persistentVolumeClaim": {"claimName": "test-cache"}}
    without = rendered({"llm": {"model": HF}})
    assert not any(kind == "PersistentVolumeClaim" for kind, _ in without)
    assert without[("Deployment", "test-llm")]["spec"]["template"]["spec"]["volumes"][0] == {
        "name": "model-cache", "emptyDir": {}}


def test_existing_claim_is_used_and_not_created():
    objects = rendered({"llm": {"model": HF}, "cache": {"existingClaim": "weights"}})
    assert not any(kind == "PersistentVolumeClaim" for kind, _ in objects)
    volumes = objects[("Deployment", "test-llm")]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["persistentVolumeClaim"] == {"claimName": "weights"}


def test_startup_probe_budget_follows_the_timeout():
    deployment = rendered({"llm": {"model": HF, "startupTimeoutSeconds": 3600}})[("Deployment", "test-llm")]
    probe = container(deployment)["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 3600
    assert probe["httpGet"]["path"] == "/health"


def test_pods_are_unprivileged():
    pod = rendered({"llm": {"model": HF}})[("Deployment", "test-llm")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod["initContainers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["privileged"] is False


def test_owner_reference_only_for_objects_from_a_cluster():
    offline = render(llmd({"llm": {"model": HF}}))
    assert all("ownerReferences" not in o["metadata"] for o in offline)
    live = render(llmd({"llm": {"model": HF}}, namespace="ai", uid="1234"))
    for obj in live:
        assert obj["metadata"]["namespace"] == "ai"
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("LLMDeployment", "test", "1234", True)


def test_hash_is_stable_and_follows_the_spec():
    first = render(llmd({"llm": {"model": HF, "engine": {"maxModelLen": 4096}}}))
    again = render(llmd({"llm": {"model": HF, "engine": {"maxModelLen": 4096}}}))
    changed = render(llmd({"llm": {"model": HF, "engine": {"maxModelLen": 8192}}}))
    hashes = [o["metadata"]["annotations"][HASH_ANNOTATION] for o in first]
    assert hashes == [o["metadata"]["annotations"][HASH_ANNOTATION] for o in again]
    assert hashes[0] != changed[0]["metadata"]["annotations"][HASH_ANNOTATION]
    assert hashes[1] == changed[1]["metadata"]["annotations"][HASH_ANNOTATION]  # the Service did not change
    assert content_hash(first[0]) == hashes[0]


def test_config_image_and_spec_image():
    assert container(render(llmd({"llm": {"model": HF}}), RenderConfig(image="reg/rt:1"))[0])["image"] == "reg/rt:1"
    spec = {"llm": {"model": HF}, "image": "mine/rt:2", "imagePullPolicy": "Always"}
    vllm = container(render(llmd(spec), RenderConfig(image="reg/rt:1"))[0])
    assert (vllm["image"], vllm["imagePullPolicy"]) == ("mine/rt:2", "Always")


def test_yaml_special_values_survive_rendering():
    """Values that YAML would misread if pasted unquoted stay strings."""
    spec = {"llm": {"model": {**HF, "servedName": "on"}, "engine": {
        "extraArgs": ["--chat-template", "{% for m in messages %}: {{ m }}\n#"],
        "env": [{"name": "X", "value": "yes"}, {"name": "Y", "value": "'\"]}"}]}}}
    vllm = container(render(llmd(spec))[0])
    assert vllm["args"][vllm["args"].index("--served-model-name") + 1] == "on"
    assert vllm["args"][-1] == "{% for m in messages %}: {{ m }}\n#"
    assert {"name": "X", "value": "yes"} in vllm["env"] and {"name": "Y", "value": "'\"]}"} in vllm["env"]


def test_service_and_url():
    objects = rendered({"rerank": {"model": HF}, "apiKeySecretRef": {"name": "key", "key": "k"},
                        "service": {"type": "LoadBalancer", "port": 9000, "annotations": {"a/b": "c"}}}, namespace="ai")
    service = objects[("Service", "test-rerank")]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == {"llmops.dev/deployment": "test", "llmops.dev/role": "rerank"}
    assert service_url(llmd({"rerank": {"model": HF}, "service": {"port": 9000}}, namespace="ai"), "rerank") == (
        "http://test-rerank.ai.svc:9000/v1")


def test_cpu_role_requests_no_gpu_and_uses_the_cpu_image():
    spec = {"llm": {"model": HF, "device": "CPU", "kvCacheSize": "1536Mi",
                    "scheduling": {"tolerations": [{"key": "cpu-pool", "operator": "Exists"}]}}}
    deployment = render(llmd(spec), RenderConfig(image="reg/gpu:1", cpu_image="reg/cpu:1"))[0]
    pod = deployment["spec"]["template"]["spec"]
    vllm = container(deployment)
    assert vllm["resources"] == {"requests": {}, "limits": {}}
    assert pod["tolerations"] == [{"key": "cpu-pool", "operator": "Exists"}]  # no GPU toleration
    assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {"reg/cpu:1"}
    # KV-cache space is whole GiB: 1536Mi rounds up to 2.
    assert {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "2"} in vllm["env"]
    dshm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"]["sizeLimit"] == "1Gi"
    # Same contract as on GPUs: download init container, probes on /health, the key by reference.
    assert container(deployment, "model-download")["command"] == ["llm-runtime", "download"]
    assert vllm["startupProbe"]["httpGet"]["path"] == "/health"


def test_cpu_role_defaults_and_spec_image_wins():
    deployment = render(llmd({"rerank": {"model": HF, "device": "CPU", "resources": {"memory": "6Gi"}},
                              "image": "mine/rt:2"}))[0]
    vllm = container(deployment)
    assert vllm["image"] == "mine/rt:2"
    assert vllm["resources"] == {"requests": {"memory": "6Gi"}, "limits": {"memory": "6Gi"}}
    assert {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"} in vllm["env"]
    gpu = render(llmd({"rerank": {"model": HF}}))[0]
    assert not any(e["name"].startswith("VLLM_CPU_") for e in container(gpu)["env"])


def test_cpu_roles_leave_thread_placement_to_the_kernel_unless_told():
    """vLLM's "auto" binding would put every vLLM pod of a node on the same first core."""
    deployment = render(llmd({"llm": {"model": HF, "device": "CPU"}}))[0]
    assert {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"} in container(deployment)["env"]
    told = render(llmd({"llm": {"model": HF, "device": "CPU", "engine": {"env": [
        {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "auto"}, {"name": "HOME", "value": "/home/vllm"}]}}}))[0]
    env = container(told)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))  # a name twice would be refused by the API server
    assert {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "auto"} in env
    assert {"name": "HOME", "value": "/home/vllm"} in env


def test_tokenizer_is_downloaded_by_its_own_init_container_and_passed_by_path():
    deployment = render(parse_llmdeployment(load_example("gguf-single-file.yaml")))[0]
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["model-download", "tokenizer-download"]
    tokenizer = container(deployment, "tokenizer-download")
    args = downloader_args(tokenizer)
    assert args.source == "modelscope://Qwen/Qwen2.5-1.5B-Instruct"
    assert args.allow_pattern == ["*.json", "*.txt", "*.model", "*.tiktoken"]
    vllm_args = container(deployment)["args"]
    assert vllm_args[vllm_args.index("--tokenizer") + 1] == "/models/modelscope/Qwen/Qwen2.5-1.5B-Instruct/master"


def test_file_and_patterns_that_start_with_a_dash_reach_the_downloader_as_values():
    deployment = render(llmd({"llm": {"model": {"source": "hf://org/m", "file": "-q4.gguf",
                                                "ignorePatterns": ["-draft*", "--help"]}}}))[0]
    args = downloader_args(container(deployment, "model-download"))
    assert args.file == "-q4.gguf"
    assert args.ignore_pattern == ["-draft*", "--help"]


def test_network_policy_lets_in_only_the_named_namespaces_on_the_serving_port():
    objects = rendered({"llm": {"model": HF}, "embedding": {"model": HF},
                        "service": {"allowedNamespaces": ["apps", "gateway"]}}, namespace="models")
    policy = objects[("NetworkPolicy", "test-ingress")]
    assert policy["spec"]["podSelector"] == {"matchLabels": {"llmops.dev/deployment": "test"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["apps", "gateway"]}]}}]
    # The port is named like the vLLM container's, so a changed service.port cannot open another one.
    for role in ("llm", "embedding"):
        deployment = objects[("Deployment", f"test-{role}")]
        assert [p["name"] for p in container(deployment)["ports"]] == [rule["ports"][0]["port"]]
        assert deployment["spec"]["template"]["metadata"]["labels"]["llmops.dev/deployment"] == "test"


def test_no_network_policy_unless_asked_for():
    assert not [key for key in rendered({"llm": {"model": HF}}) if key[0] == "NetworkPolicy"]


def test_an_open_endpoint_must_be_asked_for():
    open_service = {"rerank": {"model": HF}, "service": {"type": "NodePort", "allowUnauthenticated": True}}
    assert rendered(open_service)[("Service", "test-rerank")]["spec"]["type"] == "NodePort"
