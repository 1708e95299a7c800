#!/usr/bin/env python3
"""Generate tiny random models that vLLM serves on CPU: offline, deterministic, a few MB each.

    python3 e2e/cluster/tiny_models.py           generate (or reuse) the models; print their directory
    python3 e2e/cluster/tiny_models.py --print   print the directory, generate nothing

    ${LLMOPS_CACHE_DIR:-$HOME/.cache/llm-operator}/tiny-models-<hash>/
      chat/        Qwen2ForCausalLM + byte-level BPE tokenizer + ChatML chat template: /v1/chat/completions
      embedding/   BertModel + WordPiece tokenizer: /v1/embeddings (`--runner pooling`)
      rerank/      BertForSequenceClassification, one label: /v1/rerank and /v1/score (`--runner pooling`)

Each directory is a Hugging Face model directory (config.json, tokenizer files, model.safetensors), as
`llm-runtime download` leaves one. <hash> covers this file and the versions of the CPU image, whose
Python (torch, transformers, tokenizers from runtime/vllm-cpu-requirements.txt) generates the models:
the host needs none of them. `runtime/cpu-image.sh --run` runs this file chrooted into the image's
cached base layer (building it when missing), with the output directory mounted at /mnt.

The weights are random (fixed seeds): the answers are gibberish, but every endpoint really runs the
model. Shapes are chosen for vLLM's CPU backend: the attention heads are 64 wide (head_dim 16 passes
/health, then fails at the first request).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("LLMOPS_CACHE_DIR", Path.home() / ".cache" / "llm-operator"))
ROLES = ("chat", "embedding", "rerank")
SEED = 1234
# Context of the chat model, as Qwen2.5's (RoPE: no weights depend on it): room for the maxModelLen an
# example asks for, so the tiny model stands in for the real one unchanged.
CHAT_CONTEXT = 32768

# The tokenizers' vocabularies come from these lines only; any text still encodes (byte-level BPE for
# the chat model; [UNK] for what the BERT vocabulary lacks).
CORPUS = [
    "The operator turns one LLMDeployment into Deployments and Services that serve models with vLLM.",
    "An init container downloads the weights from ModelScope or Hugging Face into a shared cache.",
    "Embedding models turn text into vectors; rerankers score how well a passage answers a query.",
    "Kubernetes schedules the pods, and the readiness probe waits until the server is healthy.",
    "Hello! How can I help you today? Tell me about the weather, the cluster and the models.",
    "A tiny random model answers with gibberish, but the whole serving path really runs.",
    "What is the capital of France? Paris is the capital of France.",
    "user assistant system: you are a helpful assistant that answers in one short sentence.",
]

# ChatML, as Qwen2 models use it; add_generation_prompt opens the assistant's turn.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def cache_key() -> str:
    """Hash of what decides the output: this file and the pins of the Python that runs it."""
    repo = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for pinned in ("runtime/llm_runtime/versions.py", "runtime/vllm-cpu-requirements.txt"):
        digest.update((repo / pinned).read_bytes())
    return digest.hexdigest()[:16]


def output_dir() -> Path:
    return CACHE / f"tiny-models-{cache_key()}"


# --- generation: runs with the image's Python (torch, transformers, tokenizers) ----------------------

def _chat_model(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # All 256 bytes are in the alphabet, so any text encodes: a request never meets an unknown token.
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=CHAT_CONTEXT)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    eos = tokenizer.token_to_id("<|im_end|>")
    config = Qwen2Config(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=CHAT_CONTEXT,
        tie_word_embeddings=True, bos_token_id=tokenizer.token_to_id("<|endoftext|>"), eos_token_id=eos,
        pad_token_id=tokenizer.token_to_id("<|endoftext|>"), torch_dtype="bfloat16",
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = eos
    model.save_pretrained(out)


def _bert_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    # The WordPiece vocabulary is built here rather than by tokenizers' WordPieceTrainer, whose result
    # changes from run to run (its ties are broken in hash order): every character of the corpus, on
    # its own and as a continuation (##c), so any word of it encodes, then its whole words, all sorted.
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = sorted({word for line in CORPUS for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))})
    chars = sorted({char for word in words for char in word})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    tokens += [word for word in words if word not in tokens]
    tokenizer = Tokenizer(models.WordPiece(vocab={token: i for i, token in enumerate(tokens)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    # Pairs (query, passage) get token type 1 for the passage, as cross-encoders expect.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=512)
    fast.save_pretrained(out)
    return tokenizer


def _bert_config(tokenizer, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=128, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=256, max_position_embeddings=512,
                      pad_token_id=tokenizer.token_to_id("[PAD]"), torch_dtype="float32", **extra)


def _embedding_model(out: Path) -> None:
    import torch
    from transformers import BertModel

    tokenizer = _bert_tokenizer(out)
    torch.manual_seed(SEED + 1)
    BertModel(_bert_config(tokenizer), add_pooling_layer=False).save_pretrained(out)


def _rerank_model(out: Path) -> None:
    import torch
    from transformers import BertForSequenceClassification

    tokenizer = _bert_tokenizer(out)
    torch.manual_seed(SEED + 2)
    # One label: vLLM serves a 1-label classifier as a cross-encoder (/v1/rerank, /v1/score).
    BertForSequenceClassification(_bert_config(tokenizer, num_labels=1)).save_pretrained(out)


def generate(out: Path) -> None:
    """Write chat/, embedding/, rerank/ under `out` (needs torch, transformers, tokenizers)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # training order stays the same every run
    for role, make in (("chat", _chat_model), ("embedding", _embedding_model), ("rerank", _rerank_model)):
        (out / role).mkdir(parents=True, exist_ok=True)
        make(out / role)
    for path in sorted(out.rglob("*")):
        # safetensors writes its file 0600; vLLM reads the models as UID 1000, as in the pods.
        path.chmod(0o755 if path.is_dir() else 0o644)
        if path.is_file():
            print(f"{path.stat().st_size:>9}  {path.relative_to(out)}")
    out.chmod(0o755)


# --- host side: cache, lock, run the generation inside the image's base layer ------------------------

def ensure() -> Path:
    final = output_dir()
    if final.is_dir():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "tiny-models.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one generator at a time; a second caller reuses the result
        if final.is_dir():
            return final
        # Built under a temporary name and renamed when complete: an interrupted run never looks done.
        work = final.with_name(final.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        shutil.copy(__file__, work / "tiny_models.py")
        subprocess.run(["bash", str(Path(__file__).resolve().parents[2] / "runtime" / "cpu-image.sh"), "--run", str(work),
                        "/opt/venv/bin/python", "/mnt/tiny_models.py", "--generate", "/mnt/out"], check=True)
        (work / "out").rename(final)
        shutil.rmtree(work)
        for old in CACHE.glob("tiny-models-*"):  # earlier versions of this file's output
            if old.is_dir() and old != final:
                shutil.rmtree(old)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="print the output directory, generate nothing")
    parser.add_argument("--generate", type=Path, metavar="DIR",
                        help="generate into DIR with this Python (what runs inside the image)")
    args = parser.parse_args(argv)
    if args.generate:
        generate(args.generate)
    elif args.print:
        print(output_dir())
    else:
        print(ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
