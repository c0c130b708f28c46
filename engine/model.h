/* model.h - a Llama-architecture model loaded from GGUF: its shape (from the
 * `llama.*` metadata) and borrowed views of its weights (inside the mapping).
 *
 * model_load validates every tensor the forward pass will touch: present,
 * the expected shape, a computable type (an unsupported type is an error that
 * names the tensor and the type). Ownership: the caller owns the model; the
 * model owns the GGUF mapping, the tokenizer reads the vocab from it.
 * Thread-safety: read-only after load, any thread. */
#pragma once
#include <stdint.h>

#include "config/err.h"
#include "kernels/matmul.h"

struct gguf;
struct model;               /* opaque */

struct model_shape {        /* read-only value */
    int n_vocab;            /* rows of the output matrix */
    int n_embd;             /* dim */
    int n_ff;               /* FFN hidden width */
    int n_layer;
    int n_head;
    int n_head_kv;          /* < n_head: grouped-query attention */
    int head_dim;           /* n_embd / n_head */
    int n_rot;              /* RoPE dims per head (<= head_dim) */
    int n_ctx_train;        /* llama.context_length */
    float rms_eps;
    float rope_freq_base;
};

struct model_layer {        /* borrowed views; shapes as (n_cols x n_rows) */
    const float *attn_norm; /* [n_embd] */
    struct qtensor wq;      /* n_embd -> n_head * head_dim */
    struct qtensor wk;      /* n_embd -> n_head_kv * head_dim */
    struct qtensor wv;      /* n_embd -> n_head_kv * head_dim */
    struct qtensor wo;      /* n_head * head_dim -> n_embd */
    const float *ffn_norm;  /* [n_embd] */
    struct qtensor w_gate;  /* n_embd -> n_ff */
    struct qtensor w_up;    /* n_embd -> n_ff */
    struct qtensor w_down;  /* n_ff -> n_embd */
};

struct model *model_load(const char *path, struct sp_err *err);
void model_free(struct model *m);                        /* NULL is fine */

const struct model_shape *model_shape(const struct model *m);
const struct gguf *model_gguf(const struct model *m);
const struct model_layer *model_layer(const struct model *m, int l);
const struct qtensor *model_tok_embd(const struct model *m);   /* n_embd x n_vocab */
const float *model_output_norm(const struct model *m);          /* [n_embd] */
const struct qtensor *model_output(const struct model *m);      /* n_embd -> n_vocab; tied: tok_embd */
/* Bytes of weights read per generated token (for bandwidth bounds). */
uint64_t model_weight_bytes(const struct model *m);
/* Short description: "llama 5L 64d 8h/4kv ff172 vocab512 (f32)". */
const char *model_desc(const struct model *m);
