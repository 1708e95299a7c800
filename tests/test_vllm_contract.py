"""The vLLM contract: every command line the renderer produces is accepted by the pinned vLLM's
own `vllm serve` parser (tests/vllm_check.py), for every example and for generated specs, and vLLM
reads from it exactly the settings the operator owns: the model path, the served name, the
parallel sizes and the port, and never an API key, a host or a config file."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from llm_operator.api import parse_llmdeployment
from llm_operator.api.llmbatch import LLMBatch
from llm_operator.api.workload import RESERVED_FLAGS, RESERVED_SHORT_FLAGS, reserved_flag
from llm_operator.render import RenderConfig, render
from llm_operator.render.batch import batch_plan, render_batch
from llm_operator.render.config import CONTAINER_PORT, parallelism, served_name
from strategies import llmdeployment_specs
from support import EXAMPLES, container, llmd, load_example


def serve_lines(objects):
    """(deployment name, args after `vllm serve`) for every rendered Deployment: the container's own,
    or what follows `--` when `llm-runtime serve` runs vLLM (with a compile cache)."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            vllm = container(obj)
            if vllm["command"] == ["llm-runtime", "serve"]:
                yield obj["metadata"]["name"], vllm["args"][vllm["args"].index("--") + 1:]
            else:
                assert vllm["command"] == ["vllm", "serve"]
                yield obj["metadata"]["name"], vllm["args"]


def assert_vllm_reads_what_the_operator_set(vllm_parser, llmd):
    """Parse every role's command line with vLLM's parser and compare what it read with the spec."""
    lines = dict(serve_lines(render(llmd)))
    for role_name, role in llmd.spec.roles().items():
        args = lines[f"{llmd.metadata.name}-{role_name}"]
        ok, error, parsed = vllm_parser.parse(args)
        assert ok, f"{role_name}: vLLM refused `vllm serve {' '.join(args)}`: {error}"
        tensor, pipeline = parallelism(role)
        assert parsed["model_tag"] == args[0]
        assert parsed["served_model_name"] == [served_name(role.model)]
        assert (parsed["tensor_parallel_size"], parsed["pipeline_parallel_size"]) == (tensor, pipeline)
        assert parsed["port"] == CONTAINER_PORT
        assert parsed["api_key"] is None and parsed["host"] is None and not parsed["config"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_accepted_by_vllm(example, vllm_parser):
    assert_vllm_reads_what_the_operator_set(vllm_parser, parse_llmdeployment(yaml.safe_load(example.read_text())))


# A sample, not an exhaustive search: each check costs a round trip to the parser process.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(spec=llmdeployment_specs())
def test_generated_specs_are_accepted_by_vllm(spec, vllm_parser):
    assert_vllm_reads_what_the_operator_set(vllm_parser, llmd(spec))


# Attributes of vLLM's namespace that a reserved flag sets (see RESERVED_FLAGS for why each is).
RESERVED_DESTS = ("model", "host", "port", "served_model_name", "tensor_parallel_size", "pipeline_parallel_size",
                  "api_key", "runner", "tokenizer", "config")


def test_every_spelling_of_a_reserved_flag_is_refused_and_no_other_flag_is(vllm_parser):
    """Completeness against the pinned vLLM: each of its option strings that sets an owned setting
    (including short aliases such as -tp) is refused, and each flag that sets anything else passes."""
    options = vllm_parser.options()
    for dest in RESERVED_DESTS:
        for option in options[dest]:
            underscored = "--" + option[2:].replace("-", "_") if option.startswith("--") else option
            assert reserved_flag(option) and reserved_flag(underscored) and reserved_flag(option + "=x"), option
    for dest, strings in options.items():
        if dest not in RESERVED_DESTS + ("help",):
            for option in strings:
                assert reserved_flag(option) is None, f"{option} ({dest}) would be refused but sets no owned setting"
    listed = set(RESERVED_FLAGS + RESERVED_SHORT_FLAGS)
    assert {o for d in RESERVED_DESTS for o in options[d]} <= listed


def test_a_refused_spelling_really_reaches_the_reserved_setting(vllm_parser):
    """The rule is not stricter than needed for these: vLLM itself maps each to an owned setting."""
    base = ["/models/x", "--served-model-name", "m"]
    for extra, dest, value in ((["--served_model_name", "evil"], "served_model_name", ["evil"]),
                               (["-tp", "4"], "tensor_parallel_size", 4),
                               (["--api_key=plain"], "api_key", ["plain"]),
                               (["--api-k", "plain"], "api_key", ["plain"])):
        ok, error, parsed = vllm_parser.parse(base + extra)
        assert ok, error
        assert parsed[dest] == value
        assert any(reserved_flag(arg) for arg in extra)


# ---------------------------------------------------------------- LLMBatch: `vllm run-batch`


def test_every_batch_command_line_is_accepted_by_vllm_run_batch(vllm_parser):
    """The runner passes `-i <good lines> -o <answers>` and then the rendered arguments: vLLM's own
    run-batch parser accepts them and reads the model, served name and parallel sizes from them."""
    examples = [load_example("batch.yaml")]
    cpu = copy.deepcopy(examples[0])
    cpu["spec"].update(device="CPU", kvCacheSize="2Gi", engine={"extraArgs": ["--max-num-seqs", "1"]})
    del cpu["spec"]["gpus"]
    parallel = copy.deepcopy(examples[0])
    parallel["spec"].update(gpus=4, pipelineParallelSize=2, engine={"dtype": "bfloat16", "enablePrefixCaching": False})
    for raw in (*examples, cpu, parallel):
        batch = LLMBatch.model_validate(raw)
        runner = render_batch(batch)[0]["spec"]["template"]["spec"]["containers"][0]
        assert runner["command"] == ["llm-runtime", "batch"]
        vllm_args = runner["args"][runner["args"].index("--") + 1:]
        ok, error, parsed = vllm_parser.parse_run_batch(["-i", "/tmp/in.jsonl", "-o", "/tmp/out.jsonl", *vllm_args])
        assert ok, f"vLLM refused `vllm run-batch ... {' '.join(vllm_args)}`: {error}"
        plan = batch_plan(batch, RenderConfig())
        assert parsed["model"] == plan.model_path
        assert parsed["served_model_name"] == [plan.served_name]
        assert (parsed["tensor_parallel_size"], parsed["pipeline_parallel_size"]) == (plan.tensor_parallel, plan.pipeline_parallel)
        assert (parsed["input_file"], parsed["output_file"]) == ("/tmp/in.jsonl", "/tmp/out.jsonl")
        assert not parsed["enable_metrics"]


def test_run_batch_takes_no_positional_model(vllm_parser):
    """Why the batch gives `--model`: `vllm run-batch` has no positional model, unlike `vllm serve`."""
    ok, error, _ = vllm_parser.parse_run_batch(["-i", "a", "-o", "b", "/models/x"])
    assert not ok and "unrecognized arguments" in error
