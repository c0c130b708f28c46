/* tokenizer.h - SentencePiece-style BPE from a GGUF vocab
 * (`tokenizer.ggml.model = "llama"`), matching llama.cpp's llm_tokenizer_spm:
 * spaces become U+2581, an optional space prefix, bigram merges by score,
 * byte fallback `<0xNN>` for text no token covers.
 *
 * Ownership: tok_create copies what it needs out of the GGUF, so the tokenizer
 * outlives it. Thread-safety: read-only after create, any thread (encode uses
 * only the caller's memory and its own temporary allocations). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/err.h"

struct gguf;
struct tokenizer;           /* opaque */

struct tokenizer *tok_create(const struct gguf *g, struct sp_err *err);
void tok_free(struct tokenizer *t);                      /* NULL is fine */

int32_t tok_n_vocab(const struct tokenizer *t);
int32_t tok_bos(const struct tokenizer *t);              /* -1 if none */
int32_t tok_eos(const struct tokenizer *t);              /* -1 if none */
bool tok_add_bos(const struct tokenizer *t);             /* vocab asks for BOS */
/* True for end-of-generation tokens (EOS, EOT). */
bool tok_is_eog(const struct tokenizer *t, int32_t id);

/* Encode len bytes of text (any bytes; invalid UTF-8 falls back to bytes).
 * add_bos prepends BOS. Writes at most cap ids; returns the number of ids the
 * whole encoding has (may exceed cap: call again with a bigger buffer), or a
 * negative SP_E* code. Special (control/unknown) tokens in the text are NOT
 * parsed; user-defined tokens are, as in llama.cpp (split out verbatim first,
 * and the text after one gets the space prefix again). */
int tok_encode(const struct tokenizer *t, const char *text, size_t len, bool add_bos,
               int32_t *ids, int cap, struct sp_err *err);

/* Bytes of one token as it reads in text (U+2581 -> ' ', <0x0A> -> "\n";
 * control tokens such as BOS/EOS -> empty). Borrowed until tok_free; *len set.
 * An id out of range gives NULL. */
const char *tok_piece(const struct tokenizer *t, int32_t id, size_t *len);

/* The raw vocabulary string of a token (e.g. "▁Once"), borrowed; NULL if out of range. */
const char *tok_text(const struct tokenizer *t, int32_t id, size_t *len);
