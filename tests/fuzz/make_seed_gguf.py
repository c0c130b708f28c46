#!/usr/bin/env python3
"""make_seed_gguf.py - write the tiny GGUF seeds of the fuzz_gguf corpus.

Usage: python3 tests/fuzz/make_seed_gguf.py [OUT_DIR]   (default tests/fuzz/corpus/fuzz_gguf)
Writes tiny-llama.gguf (a complete 1-layer llama model with a 16-token SPM
vocab, every tensor F32, ~2 KB: model_load and tok_create both accept it) and
vocab-only.gguf (the same metadata, no tensors). Standard library only; the
output is deterministic, so re-running it changes nothing."""
import os
import struct
import sys

U32, I32, F32, BOOL, STR, ARR, U64 = 4, 5, 6, 7, 8, 9, 10
N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_CTX = 4, 8, 2, 1, 32
VOCAB = [("<unk>", 2), ("<s>", 3), ("</s>", 3), ("<0x0A>", 6), ("<0x41>", 6),
         ("\u2581", 1), ("a", 1), ("b", 1), ("e", 1), ("h", 1), ("t", 1),
         ("\u2581a", 1), ("ab", 1), ("\u2581t", 1), ("he", 1), ("\u2581the", 1)]


def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, payload):
    return s(key) + struct.pack("<I", typ) + payload


def metadata():
    toks = b"".join(s(t) for t, _ in VOCAB)
    out = [
        kv("general.architecture", STR, s("llama")),
        kv("general.name", STR, s("tiny")),
        kv("llama.context_length", U32, struct.pack("<I", N_CTX)),
        kv("llama.embedding_length", U32, struct.pack("<I", N_EMBD)),
        kv("llama.feed_forward_length", U32, struct.pack("<I", N_FF)),
        kv("llama.block_count", U32, struct.pack("<I", 1)),
        kv("llama.attention.head_count", U32, struct.pack("<I", N_HEAD)),
        kv("llama.attention.head_count_kv", U32, struct.pack("<I", N_HEAD_KV)),
        kv("llama.attention.layer_norm_rms_epsilon", F32, struct.pack("<f", 1e-5)),
        kv("tokenizer.ggml.model", STR, s("llama")),
        kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, len(VOCAB)) + toks),
        kv("tokenizer.ggml.scores", ARR, struct.pack("<IQ", F32, len(VOCAB)) +
           b"".join(struct.pack("<f", -float(i)) for i in range(len(VOCAB)))),
        kv("tokenizer.ggml.token_type", ARR, struct.pack("<IQ", I32, len(VOCAB)) +
           b"".join(struct.pack("<i", t) for _, t in VOCAB)),
        kv("tokenizer.ggml.bos_token_id", U32, struct.pack("<I", 1)),
        kv("tokenizer.ggml.eos_token_id", U32, struct.pack("<I", 2)),
        kv("tokenizer.ggml.add_bos_token", BOOL, b"\x01"),
    ]
    return out


def tensors():
    hd = N_EMBD // N_HEAD
    t = [("token_embd.weight", (N_EMBD, len(VOCAB))), ("output_norm.weight", (N_EMBD,)),
         ("blk.0.attn_norm.weight", (N_EMBD,)), ("blk.0.attn_q.weight", (N_EMBD, N_HEAD * hd)),
         ("blk.0.attn_k.weight", (N_EMBD, N_HEAD_KV * hd)), ("blk.0.attn_v.weight", (N_EMBD, N_HEAD_KV * hd)),
         ("blk.0.attn_output.weight", (N_HEAD * hd, N_EMBD)), ("blk.0.ffn_norm.weight", (N_EMBD,)),
         ("blk.0.ffn_gate.weight", (N_EMBD, N_FF)), ("blk.0.ffn_up.weight", (N_EMBD, N_FF)),
         ("blk.0.ffn_down.weight", (N_FF, N_EMBD))]
    return t


def write(path, with_tensors):
    kvs = metadata()
    ts = tensors() if with_tensors else []
    head = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kvs)) + b"".join(kvs)
    info, data = b"", b""
    for name, dims in ts:
        n = 1
        for d in dims:
            n *= d
        info += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        info += struct.pack("<IQ", 0, len(data))            # F32, offset in the data section
        blob = b"".join(struct.pack("<f", ((i * 37 % 17) - 8) / 16.0) for i in range(n))
        data += blob + b"\0" * (-len(blob) % 32)
    out = head + info
    if ts:
        out += b"\0" * (-len(out) % 32) + data
    with open(path, "wb") as f:
        f.write(out)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_gguf")
    os.makedirs(d, exist_ok=True)
    write(os.path.join(d, "tiny-llama.gguf"), True)
    write(os.path.join(d, "vocab-only.gguf"), False)


if __name__ == "__main__":
    main()
