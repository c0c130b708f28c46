/* http.h - the HTTP front-end on libmicrohttpd: routes, body limits, auth,
 * client identity, and the bridge between a connection and its request.
 *
 * Threads: libmicrohttpd's own threads parse and answer; they never wait on
 * the engine. A generation request is submitted to the scheduler and its
 * connection suspended; the engine's notify hook resumes it when tokens (or
 * the end) arrive. A connection that closes early cancels its request.
 * Ownership: the caller owns the server and everything passed in (scheduler,
 * tokenizer, auth, metrics), which must outlive http_free.
 * Thread-safety: http_* from the main thread. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "config/err.h"
#include "server/api.h"

struct sched;
struct tokenizer;
struct auth;
struct metrics;
struct http_server;         /* opaque */

struct http_config {
    int listen_fd;          /* bound and listening (server/service.c) */
    int threads;            /* libmicrohttpd polling threads */
    int max_connections;
    int timeout_s;          /* idle connection timeout, and the most reading one request may take */
    size_t max_body_bytes;
    const char *trusted_proxies;    /* comma-separated peer addresses; may be NULL */
    struct api_limits limits;   /* model name, token caps, chat template */
};

struct http_server *http_start(const struct http_config *cfg, struct sched *s, const struct tokenizer *tok,
                               const struct auth *a, struct metrics *m, struct sp_err *err);
/* /health answers 200 from now on. */
void http_set_ready(struct http_server *h);
/* /health answers 503 and new generations are refused (drain). */
void http_set_draining(struct http_server *h);
/* Generations still being answered. */
int http_active(struct http_server *h);
/* Shut down connections whose request (headers and body) has taken more
 * than timeout_s in all (a slowloris trickles bytes to dodge the idle
 * timeout), or whose client has hung up while sending it. Any thread; call about
 * once a second. */
void http_close_slow(struct http_server *h);
/* Stop, cancelling what is left. NULL is fine. */
void http_free(struct http_server *h);
