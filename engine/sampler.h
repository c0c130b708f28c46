/* sampler.h - turns one sequence's logits into its next token, as llama.cpp's
 * default chain does: penalties (repeat, frequency, presence) over the last
 * `penalty_last_n` tokens, then top-k, top-p, min-p, temperature, and a draw
 * from a seeded generator. temperature <= 0 is greedy (arg-max, ties to the
 * lower id), with the penalties still applied.
 *
 * Ownership: the caller owns the sampler; it keeps its own copy of the recent
 * tokens (up to SAMPLER_MAX_LAST_N) and scratch sized for n_vocab, all
 * allocated at create time. Thread-safety: one
 * sampler per sequence, used by one thread at a time. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config/err.h"

struct sampler;             /* opaque */

/* Largest penalty_last_n sampler_create accepts (the ring is allocated there). */
#define SAMPLER_MAX_LAST_N 4096

struct sampler_params {     /* small value struct, public on purpose */
    float temperature;      /* <= 0: greedy */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    float repeat_penalty;   /* 1: off */
    float frequency_penalty;/* 0: off */
    float presence_penalty; /* 0: off */
    int32_t penalty_last_n; /* tokens the penalties look back over; 0: off,
                               0..SAMPLER_MAX_LAST_N (no -1 as in llama.cpp) */
    uint64_t seed;
};

/* llama.cpp's defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off, last_n 64. */
struct sampler_params sampler_default_params(void);

struct sampler *sampler_create(const struct sampler_params *p, int32_t n_vocab,
                               struct sp_err *err);
void sampler_free(struct sampler *s);                    /* NULL is fine */

/* Start over with new params (a new request in a reused slot): clears the
 * penalty window and reseeds. Allocates nothing. SP_EINVAL on bad params. */
int sampler_reset(struct sampler *s, const struct sampler_params *p, struct sp_err *err);

/* The generator's state, so a preempted sequence resumes the same draws. */
void sampler_get_rng(const struct sampler *s, uint64_t state[4]);
void sampler_set_rng(struct sampler *s, const uint64_t state[4]);

/* Record a token that is now part of the context (prompt or generated), for
 * the penalties. */
void sampler_accept(struct sampler *s, int32_t id);

/* Pick the next token from logits[0..n_vocab). logits is not modified. */
int32_t sampler_sample(struct sampler *s, const float *logits);
