/* main.c - the sparrow binary: one executable, several verbs.
 *   sparrow run    one prompt, tokens printed as they come
 *   sparrow bench  prompt-processing and generation speed, like llama-bench
 * Every verb has --help. Flags are llama.cpp's where llama.cpp has the same
 * flag (-m, -p, -n, -t, -c, --temp, --seed, ...); an unknown flag is an
 * error that names it. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/clock.h"
#include "config/log.h"
#include "config/progress.h"
#include "config/settings.h"
#include "engine/convert.h"
#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/kvcache.h"
#include "engine/model.h"
#include "engine/perplexity.h"
#include "engine/sampler.h"
#include "engine/stop.h"
#include "engine/tokenizer.h"
#include "scheduler/batcher.h"
#include "server/auth.h"
#include "server/buildinfo.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/service.h"

#define MAX_STOPS 8

/* --- flag parsing: one table per verb ------------------------------------ */

enum flag_kind { FLAG_STR, FLAG_INT, FLAG_FLOAT, FLAG_U64, FLAG_BOOL, FLAG_LIST };

struct flag {
    const char *short_name;  /* "-m" or NULL */
    const char *long_name;   /* "--model"; '-' and '_' are the same */
    enum flag_kind kind;
    void *dst;
    const char *help;
};

static bool flag_name_eq(const char *arg, const char *name) {
    for (; *arg && *name; arg++, name++) {
        char a = *arg == '_' ? '-' : *arg, b = *name == '_' ? '-' : *name;
        if (a != b) return false;
    }
    return *arg == *name;
}

struct str_list { const char *v[MAX_STOPS]; int n; };

static int parse_flags(const char *verb, const struct flag *flags, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 1;
        const struct flag *f = NULL;
        for (const struct flag *p = flags; p->long_name; p++)
            if ((p->short_name && !strcmp(a, p->short_name)) || flag_name_eq(a, p->long_name)) f = p;
        if (!f) { fprintf(stderr, "sparrow %s: unknown flag '%s' (see --help)\n", verb, a); return -1; }
        if (f->kind == FLAG_BOOL) { *(bool *)f->dst = true; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "sparrow %s: %s needs a value\n", verb, a); return -1; }
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        switch (f->kind) {
        case FLAG_STR: *(const char **)f->dst = v; end = (char *)v + strlen(v); break;
        case FLAG_INT: { long x = strtol(v, &end, 10); if (x < -2147483647L || x > 2147483647L) errno = ERANGE;
                         *(int *)f->dst = (int)x; break; }
        case FLAG_FLOAT: *(float *)f->dst = strtof(v, &end); break;
        case FLAG_U64: *(unsigned long long *)f->dst = strtoull(v, &end, 10); break;
        case FLAG_LIST: {
            struct str_list *l = f->dst;
            if (l->n == MAX_STOPS) { fprintf(stderr, "sparrow %s: at most %d %s\n", verb, MAX_STOPS, a); return -1; }
            l->v[l->n++] = v; end = (char *)v + strlen(v); break;
        }
        case FLAG_BOOL: break;
        }
        if (errno || end == v || *end) { fprintf(stderr, "sparrow %s: bad value '%s' for %s\n", verb, v, a); return -1; }
    }
    return 0;
}

static void print_help(const char *verb, const char *what, const struct flag *flags) {
    printf("usage: sparrow %s [flags]\n%s\n\nflags:\n", verb, what);
    for (const struct flag *p = flags; p->long_name; p++)
        printf("  %-4s %-22s %s\n", p->short_name ? p->short_name : "", p->long_name, p->help);
}

/* --- run ----------------------------------------------------------------- */

/* A KV cache with one slot whose whole context is reserved up front. */
static struct kv_cache *one_sequence_cache(const struct model_shape *s, int n_ctx, struct sp_err *err) {
    const int block_size = 16;
    struct kv_config cfg = { block_size, (n_ctx + block_size - 1) / block_size, 1, n_ctx };
    struct kv_cache *kv = kv_create(s, &cfg, err);
    if (kv && kv_seq_reserve(kv, 0, n_ctx) != SP_OK) {
        kv_free(kv);
        sp_fail(err, SP_ENOMEM, "cannot reserve %d tokens of KV cache", n_ctx);
        return NULL;
    }
    return kv;
}

struct run_opts {
    const char *model, *prompt;
    int n_predict, threads, ctx_size, batch_size;
    struct sampler_params sp;
    unsigned long long seed;
    struct str_list stops;
    bool no_echo;
};

/* Feed tokens [0, n) of one sequence in chunks of at most batch tokens;
 * logits of the last token land in `logits`. */
static int prefill(struct fwd *f, struct kv_cache *kv, const int32_t *tokens, int n, int pos0,
                   float *logits, struct sp_err *err) {
    const int B = fwd_max_tokens(f);
    int32_t pos[B], seq[B];
    bool want[B];
    for (int i = 0; i < n; i += B) {
        int c = n - i < B ? n - i : B;
        for (int j = 0; j < c; j++) { pos[j] = pos0 + i + j; seq[j] = 0; want[j] = (i + j == n - 1); }
        struct fwd_batch b = { c, tokens + i, pos, seq, want };
        int rc = fwd_run(f, kv, &b, logits, err);
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}

static int cmd_run(int argc, char **argv) {
    struct run_opts o = { .n_predict = 128, .threads = 2, .ctx_size = 0, .batch_size = 512,
                          .sp = sampler_default_params(), .seed = 0xFFFFFFFFull };
    const struct flag flags[] = {
        { "-m", "--model", FLAG_STR, &o.model, "GGUF model file (required)" },
        { "-p", "--prompt", FLAG_STR, &o.prompt, "prompt text (required)" },
        { "-n", "--n-predict", FLAG_INT, &o.n_predict, "tokens to generate (default 128; -1: until EOS or context end)" },
        { "-t", "--threads", FLAG_INT, &o.threads, "worker threads (default 2)" },
        { "-c", "--ctx-size", FLAG_INT, &o.ctx_size, "context size (default: the model's)" },
        { "-b", "--batch-size", FLAG_INT, &o.batch_size, "prompt tokens per forward pass (default 512)" },
        { NULL, "--temp", FLAG_FLOAT, &o.sp.temperature, "temperature; 0 = greedy (default 0.8)" },
        { NULL, "--top-k", FLAG_INT, &o.sp.top_k, "top-k, 0 = off (default 40)" },
        { NULL, "--top-p", FLAG_FLOAT, &o.sp.top_p, "top-p, 1 = off (default 0.95)" },
        { NULL, "--min-p", FLAG_FLOAT, &o.sp.min_p, "min-p, 0 = off (default 0.05)" },
        { NULL, "--repeat-penalty", FLAG_FLOAT, &o.sp.repeat_penalty, "repetition penalty, 1 = off (default 1)" },
        { NULL, "--repeat-last-n", FLAG_INT, &o.sp.penalty_last_n, "tokens the penalties look back over (default 64)" },
        { NULL, "--frequency-penalty", FLAG_FLOAT, &o.sp.frequency_penalty, "frequency penalty (default 0)" },
        { NULL, "--presence-penalty", FLAG_FLOAT, &o.sp.presence_penalty, "presence penalty (default 0)" },
        { "-s", "--seed", FLAG_U64, &o.seed, "sampling seed (default: random)" },
        { NULL, "--stop", FLAG_LIST, &o.stops, "stop string (repeatable, up to 8)" },
        { NULL, "--no-echo", FLAG_BOOL, &o.no_echo, "do not print the prompt first" },
        { NULL, NULL, 0, NULL, NULL },
    };
    int pr = parse_flags("run", flags, argc, argv);
    if (pr > 0) { print_help("run", "Generate text for one prompt; tokens are printed as they come.", flags); return 0; }
    if (pr < 0) return 2;
    if (!o.model || !o.prompt) { fprintf(stderr, "sparrow run: -m MODEL and -p PROMPT are required\n"); return 2; }
    o.sp.seed = o.seed == 0xFFFFFFFFull ? (uint64_t)time(NULL) : o.seed;

    struct sp_err err = {0};
    int status = 1;
    struct model *m = NULL;
    struct tokenizer *tok = NULL;
    struct kv_cache *kv = NULL;
    struct fwd *f = NULL;
    struct sampler *smp = NULL;
    int32_t *tokens = NULL;
    float *logits = NULL;
    char *text = NULL;

    if (!(m = model_load(o.model, &err)) || !(tok = tok_create(model_gguf(m), &err))) goto fail;
    const struct model_shape *s = model_shape(m);
    const int n_ctx = o.ctx_size > 0 ? o.ctx_size : s->n_ctx_train;
    if (o.batch_size < 1) { sp_fail(&err, SP_EINVAL, "--batch-size must be >= 1"); goto fail; }
    tokens = malloc((size_t)n_ctx * sizeof(*tokens));
    logits = malloc((size_t)s->n_vocab * sizeof(*logits));
    if (!tokens || !logits) { sp_fail(&err, SP_ENOMEM, "out of memory"); goto fail; }
    int n_prompt = tok_encode(tok, o.prompt, strlen(o.prompt), tok_add_bos(tok), tokens, n_ctx, &err);
    if (n_prompt < 0) goto fail;
    if (n_prompt >= n_ctx || n_prompt == 0) {
        sp_fail(&err, SP_ERANGE, "prompt is %d tokens, context is %d", n_prompt, n_ctx);
        goto fail;
    }
    if (!(kv = one_sequence_cache(s, n_ctx, &err)) ||
        !(f = fwd_create(m, o.batch_size < n_prompt ? o.batch_size : n_prompt, n_ctx, o.threads, &err)) ||
        !(smp = sampler_create(&o.sp, s->n_vocab, &err)))
        goto fail;
    for (int i = 0; i < n_prompt; i++) sampler_accept(smp, tokens[i]);

    if (!o.no_echo) { fputs(o.prompt, stdout); fflush(stdout); }
    double t0 = sp_now();
    if (prefill(f, kv, tokens, n_prompt, 0, logits, &err) != SP_OK) goto fail;
    double t1 = sp_now();

    /* Generated text is kept whole for stop strings; what is final is printed. */
    const int max_gen = o.n_predict < 0 ? n_ctx - n_prompt : o.n_predict;
    size_t text_len = 0, text_cap = 256, printed = 0;
    if (!(text = malloc(text_cap))) { sp_fail(&err, SP_ENOMEM, "out of memory"); goto fail; }
    int n_gen = 0;
    bool stopped = false;
    for (int pos = n_prompt; n_gen < max_gen && pos < n_ctx && !stopped; pos++) {
        int32_t id = sampler_sample(smp, logits);
        n_gen++;
        if (tok_is_eog(tok, id)) break;
        sampler_accept(smp, id);
        size_t plen;
        const char *piece = tok_piece(tok, id, &plen);
        if (text_len + plen + 1 > text_cap) {
            while (text_len + plen + 1 > text_cap) text_cap *= 2;
            char *nt = realloc(text, text_cap);
            if (!nt) { sp_fail(&err, SP_ENOMEM, "out of memory"); goto fail; }
            text = nt;
        }
        memcpy(text + text_len, piece, plen);
        text_len += plen;
        size_t final = stop_scan(text, text_len, o.stops.v, o.stops.n, &stopped);
        if (final > printed) { fwrite(text + printed, 1, final - printed, stdout); fflush(stdout); printed = final; }
        if (stopped || n_gen == max_gen || pos + 1 == n_ctx) break;
        tokens[pos] = id;
        if (prefill(f, kv, &tokens[pos], 1, pos, logits, &err) != SP_OK) goto fail;
    }
    if (!stopped && printed < text_len) fwrite(text + printed, 1, text_len - printed, stdout);
    fputc('\n', stdout);
    double t2 = sp_now();
    fprintf(stderr, "sparrow run: %s; prompt %d tokens in %.1f ms (%.1f t/s), generated %d tokens in %.1f ms (%.1f t/s)\n",
            model_desc(m), n_prompt, (t1 - t0) * 1e3, n_prompt / (t1 - t0), n_gen, (t2 - t1) * 1e3,
            n_gen > 0 ? n_gen / (t2 - t1) : 0.0);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "sparrow run: %s\n", err.msg);
out:
    free(text);
    free(logits);
    free(tokens);
    sampler_free(smp);
    fwd_free(f);
    kv_free(kv);
    tok_free(tok);
    model_free(m);
    return status;
}

/* --- bench --------------------------------------------------------------- */

struct int_list { int v[16]; int n; };

static int parse_int_list(const char *s, struct int_list *l) {
    l->n = 0;
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 0 || x > 1 << 20 || l->n == 16) return -1;
        l->v[l->n++] = (int)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return 0;
}

/* Seconds for one run of test (n_prompt tokens in one batch, or n_gen single-token steps). */
static int bench_once(struct fwd *f, struct kv_cache *kv, int n_prompt, int n_gen, int n_vocab,
                      float *logits, int32_t *tokens, double *secs, struct sp_err *err) {
    for (int i = 0; i < n_prompt + n_gen; i++) tokens[i] = (int32_t)((i * 7919u + 13u) % (unsigned)n_vocab);
    double t0 = sp_now();
    int rc = SP_OK;
    if (n_prompt > 0) rc = prefill(f, kv, tokens, n_prompt, 0, logits, err);
    for (int i = 0; i < n_gen && rc == SP_OK; i++) rc = prefill(f, kv, &tokens[i], 1, i, logits, err);
    *secs = sp_now() - t0;
    return rc;
}

/* One run of the batched benchmark, its figures averaged over the requests. */
struct batched_run {
    double out_tps;     /* generated tokens / wall time, prefill included */
    double decode_tps;  /* sum over requests of (tokens - 1) / (last - first token time) */
    double ttft, tpot;  /* means, seconds */
    double hit;         /* prompt tokens served from the prefix cache */
};

/* N requests submitted at once to a fresh in-process scheduler, stepped until
 * all finish. With prefix > 0 every prompt starts with the same `prefix`
 * tokens (cold cache at the start). */
static int bench_batched_once(const struct model *m, const struct tokenizer *tok, int n_req, int n_prompt, int n_gen,
                              int prefix, int threads, struct batched_run *out, struct sp_err *err) {
    const struct model_shape *s = model_shape(m);
    const int len = prefix + n_prompt, bs = 16;
    struct sched_config sc = {
        .max_running = n_req, .max_batch_tokens = 512, .n_ctx = len + n_gen + 1, .block_size = bs,
        .kv_blocks = (int64_t)n_req * ((len + n_gen + bs) / bs + 1), .threads = threads,
        .queue = { QUEUE_FCFS, n_req, n_req, 1.0, 2.0, -1.0, 256.0 },
    };
    if (sc.n_ctx > s->n_ctx_train) return sp_fail(err, SP_ERANGE, "%d tokens exceed the model's context", sc.n_ctx);
    struct sched *sched = sched_create(m, tok, &sc, err);
    if (!sched) return SP_ENOMEM;
    struct request **reqs = calloc((size_t)n_req, sizeof(*reqs));
    int32_t *t = malloc(sizeof(int32_t) * (size_t)len);
    int rc = reqs && t ? SP_OK : SP_ENOMEM;
    struct req_params p = { .sampling = sampler_default_params(), .max_tokens = n_gen, .n_logprobs = -1,
                            .ignore_eos = true };
    p.sampling.temperature = 0;
    double t0 = sp_now();
    for (int i = 0; i < n_req && rc == SP_OK; i++) {
        for (int k = 0; k < len; k++)
            t[k] = (int32_t)(k < prefix ? 1 + (k * 7919u) % (unsigned)(s->n_vocab - 1)
                                        : 1 + ((unsigned)(k + i * 1000) * 104729u) % (unsigned)(s->n_vocab - 1));
        char client[16];
        snprintf(client, sizeof(client), "c%d", i);
        if (!(reqs[i] = req_create(t, len, &p, client, err)) || (rc = sched_submit(sched, reqs[i], err)) != SP_OK)
            rc = rc ? rc : SP_ENOMEM;
    }
    int done = 0;
    while (rc == SP_OK && done < n_req) {
        int n = sched_step(sched, err);
        if (n < 0) rc = n;
        done = 0;
        for (int i = 0; i < n_req; i++) {
            struct req_view v;
            req_get_view(reqs[i], &v);
            done += v.finish != REQ_FINISH_NONE;
        }
    }
    const double wall = sp_now() - t0;
    *out = (struct batched_run){0};
    int64_t n_out = 0;
    for (int i = 0; rc == SP_OK && i < n_req; i++) {
        struct req_view v;
        req_get_view(reqs[i], &v);
        n_out += v.n_generated;
        out->ttft += (v.t_first - v.t_submit) / n_req;
        if (v.n_generated > 1) {
            out->tpot += (v.t_last - v.t_first) / (v.n_generated - 1) / n_req;
            out->decode_tps += (v.n_generated - 1) / (v.t_last - v.t_first);
        }
    }
    out->out_tps = (double)n_out / wall;
    struct sched_stats st;
    sched_get_stats(sched, &st);
    out->hit = (double)st.tokens_cached / (double)(st.tokens_cached + st.tokens_prefilled);
    for (int i = 0; reqs && i < n_req; i++) req_unref(reqs[i]);
    free(reqs);
    free(t);
    sched_free(sched);
    return rc;
}

/* bench_batched_once `reps` times: one line with the mean (and sd) of each figure. */
static int bench_batched(const struct model *m, const struct tokenizer *tok, const char *name, int n_req, int n_prompt,
                         int n_gen, int prefix, int threads, int reps, bool json, struct sp_err *err) {
    struct batched_run sum = {0}, r = {0};
    double out2 = 0, dec2 = 0;
    for (int i = 0; i < reps; i++) {
        int rc = bench_batched_once(m, tok, n_req, n_prompt, n_gen, prefix, threads, &r, err);
        if (rc != SP_OK) return rc;
        sum.out_tps += r.out_tps; sum.decode_tps += r.decode_tps;
        sum.ttft += r.ttft; sum.tpot += r.tpot; sum.hit += r.hit;
        out2 += r.out_tps * r.out_tps;
        dec2 += r.decode_tps * r.decode_tps;
    }
    const double out_sd = reps > 1 ? sqrt(fmax(0.0, (out2 - sum.out_tps * sum.out_tps / reps) / (reps - 1))) : 0.0;
    const double dec_sd = reps > 1 ? sqrt(fmax(0.0, (dec2 - sum.decode_tps * sum.decode_tps / reps) / (reps - 1))) : 0.0;
    const int len = prefix + n_prompt;
    if (json)
        printf("{\"model\":\"%s\",\"test\":\"batch%d\",\"prompt\":%d,\"shared_prefix\":%d,\"gen\":%d,\"threads\":%d,"
               "\"reps\":%d,\"out_tps\":%.2f,\"out_tps_sd\":%.2f,\"decode_tps\":%.2f,\"decode_tps_sd\":%.2f,"
               "\"ttft_ms\":%.2f,\"tpot_ms\":%.3f,\"prefix_hit\":%.3f}\n",
               name, n_req, len, prefix, n_gen, threads, reps, sum.out_tps / reps, out_sd, sum.decode_tps / reps, dec_sd,
               sum.ttft / reps * 1e3, sum.tpot / reps * 1e3, sum.hit / reps);
    else
        printf("| %s | %d | %d | %d | %.1f ± %.1f | %.1f ± %.1f | %.1f | %.2f | %.0f%% |\n", name, n_req, len, prefix,
               sum.out_tps / reps, out_sd, sum.decode_tps / reps, dec_sd, sum.ttft / reps * 1e3,
               sum.tpot / reps * 1e3, sum.hit / reps * 100);
    fflush(stdout);
    return SP_OK;
}

/* Memory read bandwidth in GB/s with n threads, best of three passes over
 * 512 MiB: the physical limit of single-stream decode, which must read every
 * weight once per token. */
struct bw_job { const uint64_t *p; size_t n; uint64_t x; };

static void *bw_read(void *arg) {
    struct bw_job *j = arg;
    uint64_t x = 0;
    for (size_t i = 0; i < j->n; i++) x ^= j->p[i];
    j->x = x;
    return NULL;
}

static double measure_bandwidth(int threads) {
    const size_t bytes = (size_t)512 << 20, n = bytes / sizeof(uint64_t);
    uint64_t *p = malloc(bytes);
    if (!p || threads < 1 || threads > 64) { free(p); return 0; }
    for (size_t i = 0; i < n; i++) p[i] = i;
    double best = 0;
    for (int pass = 0; pass < 3; pass++) {
        pthread_t t[64];
        struct bw_job j[64];
        double t0 = sp_now();
        for (int k = 0; k < threads; k++) {
            j[k] = (struct bw_job){ p + n / (size_t)threads * (size_t)k, n / (size_t)threads, 0 };
            pthread_create(&t[k], NULL, bw_read, &j[k]);
        }
        for (int k = 0; k < threads; k++) pthread_join(t[k], NULL);
        double gbs = (double)bytes / (sp_now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(p);
    return best;
}

static int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *p_list = "128,512", *n_list = "128", *c_list = NULL;
    int threads = 2, reps = 5, prompt_tokens = 64, gen_tokens = 128, shared_prefix = 0;
    bool json = false;
    const struct flag flags[] = {
        { "-m", "--model", FLAG_STR, &model, "GGUF model file (required)" },
        { "-p", "--n-prompt", FLAG_STR, &p_list, "prompt sizes, comma-separated (default 128,512)" },
        { "-n", "--n-gen", FLAG_STR, &n_list, "generation lengths, comma-separated (default 128)" },
        { "-t", "--threads", FLAG_INT, &threads, "worker threads (default 2)" },
        { "-r", "--repetitions", FLAG_INT, &reps, "repetitions per test (default 5)" },
        { NULL, "--json", FLAG_BOOL, &json, "one JSON object per test on stdout" },
        { NULL, "--concurrent", FLAG_STR, &c_list, "instead: N requests at once through the batcher, e.g. 1,4,16,64" },
        { NULL, "--prompt-tokens", FLAG_INT, &prompt_tokens, "with --concurrent: unique prompt tokens per request (default 64)" },
        { NULL, "--gen-tokens", FLAG_INT, &gen_tokens, "with --concurrent: tokens generated per request (default 128)" },
        { NULL, "--shared-prefix", FLAG_INT, &shared_prefix, "with --concurrent: tokens every prompt shares first (default 0)" },
        { NULL, NULL, 0, NULL, NULL },
    };
    int pr = parse_flags("bench", flags, argc, argv);
    if (pr > 0) { print_help("bench", "Prompt processing (ppN: N tokens in one batch) and generation (tgN: N tokens one by one)\nspeed in tokens/s, mean and stddev over repetitions, like llama-bench.", flags); return 0; }
    if (pr < 0) return 2;
    struct int_list pl, nl;
    if (!model) { fprintf(stderr, "sparrow bench: -m MODEL is required\n"); return 2; }
    if (parse_int_list(p_list, &pl) || parse_int_list(n_list, &nl) || reps < 1) {
        fprintf(stderr, "sparrow bench: bad -p/-n list or -r\n");
        return 2;
    }
    const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    if (c_list) {
        struct int_list cl;
        struct sp_err err = {0};
        if (parse_int_list(c_list, &cl) || prompt_tokens < 1 || gen_tokens < 1 || shared_prefix < 0) {
            fprintf(stderr, "sparrow bench: bad --concurrent list or token counts\n");
            return 2;
        }
        struct model *m = model_load(model, &err);
        struct tokenizer *tok = m ? tok_create(model_gguf(m), &err) : NULL;
        int rc = tok ? SP_OK : err.code;
        if (!json && m)
            printf("| model | requests | prompt | shared prefix | out tok/s | decode tok/s | TTFT mean ms | TPOT mean ms | prefix hit |\n"
                   "|---|---|---|---|---|---|---|---|---|\n");
        for (int i = 0; i < cl.n && rc == SP_OK; i++)
            if (cl.v[i] > 0) rc = bench_batched(m, tok, base, cl.v[i], prompt_tokens, gen_tokens, shared_prefix, threads, reps, json, &err);
        tok_free(tok);
        model_free(m);
        if (rc != SP_OK) fprintf(stderr, "sparrow bench: %s\n", err.msg);
        return rc == SP_OK ? 0 : 1;
    }
    int max_p = 1, max_n = 0;
    for (int i = 0; i < pl.n; i++) if (pl.v[i] > max_p) max_p = pl.v[i];
    for (int i = 0; i < nl.n; i++) if (nl.v[i] > max_n) max_n = nl.v[i];

    struct sp_err err = {0};
    int status = 1;
    struct model *m = model_load(model, &err);
    struct kv_cache *kv = NULL;
    struct fwd *f = NULL;
    float *logits = NULL;
    int32_t *tokens = NULL;
    if (!m) goto fail;
    const struct model_shape *s = model_shape(m);
    const int n_ctx = max_p + max_n + 1;
    logits = malloc((size_t)s->n_vocab * sizeof(float));
    tokens = malloc((size_t)n_ctx * sizeof(int32_t));
    if (!logits || !tokens) { sp_fail(&err, SP_ENOMEM, "out of memory"); goto fail; }
    if (!(kv = one_sequence_cache(s, n_ctx, &err)) || !(f = fwd_create(m, max_p, n_ctx, threads, &err))) goto fail;
    double warm;
    if (bench_once(f, kv, 0, 1, s->n_vocab, logits, tokens, &warm, &err) != SP_OK) goto fail;
    const double bw = measure_bandwidth(threads);
    const double bound = bw * 1e9 / (double)model_weight_bytes(m);
    if (json)
        printf("{\"model\":\"%s\",\"test\":\"membw\",\"threads\":%d,\"gbs\":%.2f,\"weight_bytes\":%llu,\"tg_bound_tps\":%.1f}\n",
               base, threads, bw, (unsigned long long)model_weight_bytes(m), bound);
    else
        printf("memory read bandwidth %.1f GB/s (%d threads); %.1f MiB of weights per token: decode bound %.0f t/s\n\n"
               "| model | size MiB | threads | test | t/s |\n|---|---|---|---|---|\n",
               bw, threads, model_weight_bytes(m) / 1048576.0, bound);
    for (int phase = 0; phase < 2; phase++) {
        const struct int_list *l = phase == 0 ? &pl : &nl;
        for (int i = 0; i < l->n; i++) {
            const int n = l->v[i];
            if (n == 0) continue;
            double sum = 0, sum2 = 0;
            char label[32];
            snprintf(label, sizeof(label), "%s%d", phase == 0 ? "pp" : "tg", n);
            struct progress *pg = progress_start(label, (double)n * reps, "tok");
            for (int r = 0; r < reps; r++) {
                double secs;
                if (bench_once(f, kv, phase == 0 ? n : 0, phase == 0 ? 0 : n, s->n_vocab, logits, tokens,
                               &secs, &err) != SP_OK) {
                    progress_done(pg);
                    goto fail;
                }
                const double tps = n / secs;
                sum += tps;
                sum2 += tps * tps;
                progress_update(pg, (double)n * (r + 1));
            }
            progress_done(pg);
            const double mean = sum / reps;
            const double sd = reps > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / reps) / (reps - 1))) : 0.0;
            if (json)
                printf("{\"model\":\"%s\",\"test\":\"%s%d\",\"threads\":%d,\"reps\":%d,\"tps_mean\":%.2f,\"tps_sd\":%.2f}\n",
                       base, phase == 0 ? "pp" : "tg", n, threads, reps, mean, sd);
            else
                printf("| %s | %.2f | %d | %s%d | %.1f ± %.1f |\n", base, model_weight_bytes(m) / 1048576.0,
                       threads, phase == 0 ? "pp" : "tg", n, mean, sd);
            fflush(stdout);
        }
    }
    status = 0;
    goto out;
fail:
    fprintf(stderr, "sparrow bench: %s\n", err.msg);
out:
    free(tokens);
    free(logits);
    fwd_free(f);
    kv_free(kv);
    model_free(m);
    return status;
}

/* --- quantize, sparsify, perplexity --------------------------------------- */

/* convert_model for a verb, with its one-line report on stderr; exit status. */
static int convert_and_report(const char *verb, const char *in, const char *out, const struct convert_opts *o) {
    struct convert_stats st;
    struct sp_err err = {0};
    if (convert_model(in, out, o, &st, &err) != SP_OK) {
        fprintf(stderr, "sparrow %s: %s\n", verb, err.msg);
        return 1;
    }
    fprintf(stderr, "sparrow %s: wrote %s: %d tensors converted, %d fell back to another type, %d copied; "
            "%.2f MiB -> %.2f MiB of tensor data\n", verb, out, st.n_converted, st.n_fallback, st.n_copied,
            st.bytes_in / 1048576.0, st.bytes_out / 1048576.0);
    if (o->sparse)
        fprintf(stderr, "sparrow %s: %s (%s, %s values): %d tensors pruned, %d kept dense (row length), "
                "sparsity %.2f%% of %llu pruned weights\n", verb, o->sparse_format, o->sparse_method,
                o->sparse->fmt.val == SPARSE_VAL_F16 ? "f16" : o->sparse->fmt.val == SPARSE_VAL_Q8 ? "q8" : "q4",
                st.n_converted, st.n_fallback, 100.0 * st.sparsity, (unsigned long long)st.n_pruned_elems);
    return 0;
}

static int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL;
    int threads = 2;
    const struct flag flags[] = {
        { "-m", "--model", FLAG_STR, &in, "input GGUF model (required)" },
        { "-o", "--output", FLAG_STR, &out, "output GGUF file (required)" },
        { NULL, "--type", FLAG_STR, &type, "target type: f32 f16 bf16 q8_0 q4_0 q5_0 q4_k q6_k (required)" },
        { "-t", "--threads", FLAG_INT, &threads, "conversion threads (default 2)" },
        { NULL, NULL, 0, NULL, NULL },
    };
    int pr = parse_flags("quantize", flags, argc, argv);
    if (pr > 0) {
        print_help("quantize", "Convert every 2-D weight to one type (decoded to float, re-encoded with ggml's\n"
                   "reference quantizer); norms and metadata are copied. A row length the type's block\n"
                   "does not divide falls back as llama-quantize does: q4_k -> q5_0, q6_k -> q8_0, else f16.", flags);
        return 0;
    }
    if (pr < 0) return 2;
    if (!in || !out || !type) { fprintf(stderr, "sparrow quantize: -m IN, -o OUT and --type are required\n"); return 2; }
    int t = convert_type_by_name(type);
    if (t < 0) { fprintf(stderr, "sparrow quantize: unknown --type '%s'\n", type); return 2; }
    struct convert_opts o = { .type = (uint32_t)t, .threads = threads };
    return convert_and_report("quantize", in, out, &o);
}

/* The whole of a file, NUL-terminated; NULL (errno set) on failure. */
static char *read_text(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16;
    char *text = malloc(cap + 1);
    *len = 0;
    for (size_t r; text && (r = fread(text + *len, 1, cap - *len, fp)) > 0;) {
        *len += r;
        if (*len == cap) {
            char *t = realloc(text, (cap *= 2) + 1);
            if (!t) { free(text); text = NULL; errno = ENOMEM; } else text = t;
        }
    }
    fclose(fp);
    if (text) text[*len] = '\0';
    return text;
}

static int cmd_sparsify(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = "2:4", *method = "magnitude", *skip = NULL;
    const char *sparsity = NULL, *calib = NULL, *quant = "f16", *block = NULL;
    int threads = 2, calib_ctx = 0;
    const struct flag flags[] = {
        { "-m", "--model", FLAG_STR, &in, "input GGUF model (required)" },
        { "-o", "--output", FLAG_STR, &out, "output GGUF file (required)" },
        { NULL, "--format", FLAG_STR, &format, "2:4, N:M, V:N:M (e.g. 64:2:8), n:M, n:m, block or 1xB (default 2:4)" },
        { NULL, "--sparsity", FLAG_STR, &sparsity, "fraction pruned, 0.75 or 75% (block, n:M and n:m need it)" },
        { NULL, "--block", FLAG_STR, &block, "with --format block: 1x2, 1x4, 1x8 or 1x16 (default 1x16)" },
        { NULL, "--quant", FLAG_STR, &quant, "kept values: f16, q8 or q4 (default f16)" },
        { NULL, "--method", FLAG_STR, &method, "pruning score: magnitude |w| or wanda |w|*||x|| (default magnitude)" },
        { NULL, "--calib", FLAG_STR, &calib, "wanda: calibration text file (required; not the evaluation text)" },
        { NULL, "--calib-ctx", FLAG_INT, &calib_ctx, "wanda: tokens per calibration chunk (default min(256, context))" },
        { NULL, "--skip-layers", FLAG_STR, &skip, "layers left dense, comma-separated (e.g. 0,5)" },
        { "-t", "--threads", FLAG_INT, &threads, "conversion threads (default 2)" },
        { NULL, NULL, 0, NULL, NULL },
    };
    int pr = parse_flags("sparsify", flags, argc, argv);
    if (pr > 0) {
        print_help("sparsify",
                   "Prune the per-layer weight matrices (blk.N.*.weight) and store them compressed (see\n"
                   "docs/formats.md). Formats: N:M keeps N of every M consecutive weights of a row\n"
                   "(1 <= N <= M <= 16; --sparsity, if given, must equal 1 - N/M); n:M picks N =\n"
                   "round((1 - S) * M) from --sparsity S, n:m also picks M: the first of 4, 8, 16 that\n"
                   "makes N whole (else 16); V:N:M (N = 2, M 4..16) lets V rows share 4 of every M\n"
                   "columns, each row keeping its best 2 (stored as 2:M); block keeps whole 1 x b\n"
                   "blocks, n = round((1 - S) * m) of every m (m*b = 256, else 128, else 64 columns).\n"
                   "A matrix whose row length is not a multiple of the format's super-block, token_embd,\n"
                   "output, the norms and --skip-layers stay as they are. Wanda scores |w| times the L2\n"
                   "norm of the weight's input column over the --calib text run through the dense model;\n"
                   "calibrate on different text than you evaluate perplexity on (it would leak).", flags);
        return 0;
    }
    if (pr < 0) return 2;
    if (!in || !out) { fprintf(stderr, "sparrow sparsify: -m IN and -o OUT are required\n"); return 2; }
    struct convert_sparse sp;
    char name[64], msg[256];
    if (convert_parse_sparse(format, block, sparsity, quant, &sp, name, sizeof(name), msg, sizeof(msg))) {
        fprintf(stderr, "sparrow sparsify: %s\n", msg);
        return 2;
    }
    const bool wanda = !strcmp(method, "wanda");
    if (!wanda && strcmp(method, "magnitude") != 0) {
        fprintf(stderr, "sparrow sparsify: --method '%s' is not magnitude or wanda\n", method);
        return 2;
    }
    if (wanda && !calib) { fprintf(stderr, "sparrow sparsify: --method wanda needs --calib FILE\n"); return 2; }
    if (!wanda && calib) { fprintf(stderr, "sparrow sparsify: --calib is used by --method wanda only\n"); return 2; }
    struct int_list sl = { .n = 0 };
    if (skip && parse_int_list(skip, &sl)) { fprintf(stderr, "sparrow sparsify: bad --skip-layers '%s'\n", skip); return 2; }
    struct convert_calib *cal = NULL;
    if (wanda) {
        size_t len;
        char *text = read_text(calib, &len);
        if (!text) { fprintf(stderr, "sparrow sparsify: cannot read '%s': %s\n", calib, strerror(errno)); return 1; }
        struct sp_err err = {0};
        int rc = convert_calibrate(in, text, len, calib_ctx, threads, &cal, &err);
        free(text);
        if (rc != SP_OK) { fprintf(stderr, "sparrow sparsify: %s\n", err.msg); return 1; }
        fprintf(stderr, "sparrow sparsify: calibrated on %d tokens of %s\n", convert_calib_tokens(cal), calib);
    }
    struct convert_opts o = { .layers_only = true, .skip_layers = sl.v, .n_skip_layers = sl.n, .sparse = &sp,
                              .calib = cal, .sparse_format = name, .sparse_method = method, .threads = threads };
    int status = convert_and_report("sparsify", in, out, &o);
    convert_calib_free(cal);
    return status;
}

/* Running values go to stdout (they are results, as llama-perplexity prints
 * them); the progress line to stderr. ctx: the struct progress *, made on the
 * first chunk, when the count is known. */
static void ppl_print(void *ctx, int chunk, int n_chunk, double running) {
    struct progress **pg = ctx;
    if (!*pg) *pg = progress_start("perplexity", n_chunk, "chunk");
    progress_update(*pg, chunk);
    printf("[%d]%.4f,", chunk, running);
    if (chunk == n_chunk) putchar('\n');
    fflush(stdout);
}

static int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    int ctx = 0, chunks = 0, threads = 2, batch = 0;
    const struct flag flags[] = {
        { "-m", "--model", FLAG_STR, &model, "GGUF model file (required)" },
        { "-f", "--file", FLAG_STR, &file, "text file to score (required)" },
        { "-c", "--ctx-size", FLAG_INT, &ctx, "tokens per chunk (default: min(512, the model's context))" },
        { NULL, "--chunks", FLAG_INT, &chunks, "score only the first N chunks (default: all)" },
        { "-b", "--batch-size", FLAG_INT, &batch, "tokens per forward pass (default: min(ctx, 512))" },
        { "-t", "--threads", FLAG_INT, &threads, "worker threads (default 2)" },
        { NULL, NULL, 0, NULL, NULL },
    };
    int pr = parse_flags("perplexity", flags, argc, argv);
    if (pr > 0) {
        print_help("perplexity", "Perplexity over a text as llama-perplexity computes it: non-overlapping chunks of\n"
                   "ctx tokens, each starting with BOS, the second half of each chunk scored; prints the\n"
                   "running value after each chunk, then the final estimate.", flags);
        return 0;
    }
    if (pr < 0) return 2;
    if (!model || !file) { fprintf(stderr, "sparrow perplexity: -m MODEL and -f FILE are required\n"); return 2; }
    FILE *fp = fopen(file, "rb");
    if (!fp) { fprintf(stderr, "sparrow perplexity: cannot open '%s': %s\n", file, strerror(errno)); return 1; }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (size_t r; text && (r = fread(text + len, 1, cap - len, fp)) > 0;) {
        len += r;
        if (len == cap) { char *t = realloc(text, cap *= 2); if (!t) { free(text); text = NULL; } else text = t; }
    }
    fclose(fp);
    if (!text) { fprintf(stderr, "sparrow perplexity: out of memory\n"); return 1; }
    struct sp_err err = {0};
    struct model *m = model_load(model, &err);
    struct tokenizer *tok = m ? tok_create(model_gguf(m), &err) : NULL;
    struct ppl_result res;
    double t0 = sp_now();
    openblas_set_num_threads(threads);
    struct progress *pg = NULL;
    int rc = tok ? ppl_run(m, tok, text, len, ctx, chunks, batch, threads, ppl_print, &pg, &res, &err) : SP_EINVAL;
    progress_done(pg);
    if (rc == SP_OK)
        printf("Final estimate: PPL = %.4f +/- %.5f\n"
               "(%s; %d tokens, %d chunks of %d, %d scored, %.1f s)\n", res.ppl, res.ppl_err, model_desc(m),
               res.n_tokens, res.n_chunk, res.n_ctx, res.n_scored, sp_now() - t0);
    else
        fprintf(stderr, "sparrow perplexity: %s\n", err.msg);
    tok_free(tok);
    model_free(m);
    free(text);
    return rc == SP_OK ? 0 : 1;
}

/* --- serve ---------------------------------------------------------------- */

/* A stop signal that reached a thread other than main (see cmd_serve). */
static volatile sig_atomic_t caught_signal;

static void on_stop_signal(int sig) { caught_signal = sig; }

static void *engine_main(void *arg) {
    sched_run(arg);
    return NULL;
}

static enum queue_policy policy_of(enum sp_scheduler_policy p) {
    switch (p) {
    case SP_SCHEDULER_POLICY_FCFS: return QUEUE_FCFS;
    case SP_SCHEDULER_POLICY_LPM: return QUEUE_LPM;
    case SP_SCHEDULER_POLICY_VTC: return QUEUE_VTC;
    case SP_SCHEDULER_POLICY_DLPM: break;
    }
    return QUEUE_DLPM;
}

/* Sizes the KV pool and the per-sequence context from the settings and the model. */
static void size_pool(const struct sp_config *c, const struct model_shape *s, struct sched_config *sc) {
    const int bs = (int)c->block_size;
    int64_t blocks = c->kv_cache_bytes > 0 ? c->kv_cache_bytes / (int64_t)kv_block_bytes(s, bs)
                                            : (c->ctx_size + bs - 1) / bs;
    if (blocks < 1) blocks = 1;
    int64_t pool_tokens = blocks * bs;
    sc->block_size = bs;
    sc->kv_blocks = blocks;
    sc->n_ctx = (int)(pool_tokens < s->n_ctx_train ? pool_tokens : s->n_ctx_train);
}

static int cmd_serve(int argc, char **argv) {
    if (sp_config_args_want_help(argc, argv)) {
        printf("usage: sparrow serve [--config FILE] [--setting value ...]\n"
               "Serve the model over an OpenAI-compatible HTTP API until SIGTERM.\n\n");
        sp_config_print_help(stdout);
        return 0;
    }
    struct sp_config cfg;
    struct sp_err err = {0};
    if (sp_config_load_all(&cfg, argc, argv, SP_CONFIG_DEFAULT_PATH, &err) != SP_OK ||
        sp_config_validate(&cfg, &err) != SP_OK) {
        fprintf(stderr, "sparrow serve: %s\n", err.msg);
        return 2;
    }
    log_set_level((enum log_level)cfg.log_level);
    char build[2048];
    log_info("%s", buildinfo_line(build, sizeof(build), "; "));
    /* Signals go to the main thread only: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Threads that libraries started before main (OpenBLAS's pool) do not
     * block them, and the default action there would kill the process
     * without a drain: catch them into a flag the main loop reads each tick. */
    struct sigaction sa = { .sa_handler = on_stop_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    openblas_set_num_threads((int)cfg.threads);

    int status = 1, fd = -1;
    bool activated = false, engine_started = false;
    struct model *m = NULL;
    struct tokenizer *tok = NULL;
    struct auth *auth = NULL;
    struct metrics *metrics = NULL;
    struct sched *sched = NULL;
    struct http_server *http = NULL;
    pthread_t engine;
    char model_name[256], template_buf[8192];

    if (svc_listen(cfg.host, (int)cfg.port, 0, &fd, &activated, &err) != SP_OK) goto fail;
    const int port = svc_bound_port(fd);
    svc_notify_status("loading %s", cfg.model);
    log_info("loading %s", cfg.model);
    if (!(m = model_load(cfg.model, &err)) || !(tok = tok_create(model_gguf(m), &err)) ||
        !(auth = auth_load(cfg.api_keys, cfg.api_key, &err)))
        goto fail;
    if (!(metrics = metrics_create())) { sp_fail(&err, SP_ENOMEM, "out of memory"); goto fail; }
    const struct model_shape *s = model_shape(m);
    struct sched_config sc = {
        .max_running = (int)cfg.max_running, .max_batch_tokens = (int)cfg.max_batch_tokens,
        .threads = (int)cfg.threads,
        .queue = { policy_of(cfg.scheduler_policy), (int)cfg.max_queue, (int)cfg.max_queue_per_client,
                   cfg.vtc_input_weight, cfg.vtc_output_weight, -1.0, (double)cfg.dlpm_quantum },
    };
    size_pool(&cfg, s, &sc);
    if (!(sched = sched_create(m, tok, &sc, &err))) goto fail;
    if (pthread_create(&engine, NULL, engine_main, sched) != 0) { sp_fail(&err, SP_ENOMEM, "cannot start the engine thread"); goto fail; }
    engine_started = true;

    struct gguf_str tmpl;
    const char *chat_template = NULL;
    if (gguf_get_str(model_gguf(m), "tokenizer.chat_template", &tmpl, NULL) == SP_OK && tmpl.len < sizeof(template_buf)) {
        memcpy(template_buf, tmpl.ptr, tmpl.len);
        template_buf[tmpl.len] = 0;
        chat_template = template_buf;
    }
    struct http_config hc = {
        .listen_fd = fd, .threads = 2, .max_connections = (int)cfg.max_connections,
        .timeout_s = (int)cfg.request_timeout_s, .max_body_bytes = (size_t)cfg.max_body_bytes,
        .trusted_proxies = cfg.trusted_proxies,
        .limits = { .max_tokens_limit = (int)cfg.max_tokens_limit, .max_prompt_tokens = sc.n_ctx - 1,
                    .model_name = sp_config_model_name(&cfg, model_name, sizeof(model_name)),
                    .chat_template = chat_template },
    };
    if (!(http = http_start(&hc, sched, tok, auth, metrics, &err))) goto fail;
    fd = -1;    /* libmicrohttpd owns it now */
    http_set_ready(http);
    log_info("serving %s (%s) on %s:%d%s: %lld KV blocks of %d tokens, context %d, %lld running, policy %s",
             model_name, model_desc(m), cfg.host, port,
             activated ? " (socket activated)" : "", (long long)sc.kv_blocks, sc.block_size, sc.n_ctx,
             (long long)cfg.max_running, sp_scheduler_policy_name(cfg.scheduler_policy));
    svc_notify_ready("serving");

    /* The main thread: signals, the watchdog (pinged only while the engine
     * loop is alive), status lines. */
    const uint64_t wd = svc_watchdog_usec();
    const double tick = wd && wd < 2000000 ? (double)wd / 2e6 : 1.0;
    for (;;) {
        struct timespec ts = { (time_t)tick, (long)((tick - (time_t)tick) * 1e9) };
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig < 0 && caught_signal) {
            sig = caught_signal;
            caught_signal = 0;
        }
        if (sig == SIGTERM || sig == SIGINT) break;
        http_close_slow(http);
        if (sig == SIGHUP) { log_info("SIGHUP: nothing to reload (restart to apply new settings)"); continue; }
        struct sched_stats st;
        sched_get_stats(sched, &st);
        double now = sp_now();
        if (wd && now - st.heartbeat < 2.0 * (double)wd / 1e6) svc_watchdog_ping();
        else if (wd) log_error("engine loop stalled for %.1f s; not pinging the watchdog", now - st.heartbeat);
        svc_notify_status("serving: %d running, %d queued, %lld tokens generated", st.running, st.queued,
                          (long long)st.tokens_generated);
    }

    /* Drain: refuse new work, let accepted requests finish, then stop. */
    log_info("draining: up to %lld s for %d requests", (long long)cfg.drain_timeout_s, http_active(http));
    svc_notify_stopping();
    http_set_draining(http);
    sched_drain(sched);
    double deadline = sp_now() + (double)cfg.drain_timeout_s;
    while (http_active(http) > 0 && sp_now() < deadline) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    if (http_active(http) > 0) log_warn("drain deadline passed: cancelling %d requests", http_active(http));
    status = 0;
    goto out;
fail:
    log_error("%s", err.msg);
out:
    http_free(http);
    if (engine_started) {
        sched_stop(sched);
        pthread_join(engine, NULL);
    }
    sched_free(sched);
    metrics_free(metrics);
    auth_free(auth);
    tok_free(tok);
    model_free(m);
    if (fd >= 0) close(fd);
    if (status == 0) log_info("stopped");
    return status;
}

/* --- dispatch ------------------------------------------------------------ */

static const struct verb {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} verbs[] = {
    { "serve", cmd_serve, "serve the model over an OpenAI-compatible HTTP API" },
    { "run", cmd_run, "generate text for one prompt" },
    { "bench", cmd_bench, "measure prompt and generation speed" },
    { "perplexity", cmd_perplexity, "perplexity of the model over a text file" },
    { "quantize", cmd_quantize, "convert a GGUF's weights to another type" },
    { "sparsify", cmd_sparsify, "prune a GGUF's layer weights to N:M, V:N:M or block sparsity" },
};

static void usage(FILE *out) {
    fprintf(out, "usage: sparrow VERB [flags]   (sparrow VERB --help for its flags)\n\nverbs:\n");
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].help);
    fprintf(out, "\n  --version  version, git commit, build flags and CPU features\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        char line[2048];
        puts(buildinfo_line(line, sizeof(line), "\n"));
        return 0;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (!strcmp(argv[1], verbs[i].name)) return verbs[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "sparrow: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
