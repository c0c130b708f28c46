/* http.c - see http.h.
 *
 * DESIGN: one struct conn per HTTP exchange (libmicrohttpd's con_cls). It is
 * reference counted: the HTTP side holds one until libmicrohttpd reports the
 * exchange complete, and the engine holds one from submission until its final
 * notify, so neither side ever touches a freed conn. A suspended connection
 * is resumed only by the engine's notify; both sides decide under conn->mu,
 * so no wake-up is lost (the reader checks for output and suspends under the
 * lock; notify appends output first, then takes the lock and resumes). */
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config/clock.h"
#include "engine/tokenizer.h"
#include "scheduler/batcher.h"
#include "scheduler/request.h"
#include "server/auth.h"
#include "server/metrics.h"

struct http_server {
    struct http_config cfg;
    struct MHD_Daemon *d;
    struct sched *s;
    const struct tokenizer *tok;
    const struct auth *auth;
    struct metrics *m;
    atomic_bool ready, draining;
    atomic_bool stopping;   /* http_free: readers must not park connections */
    atomic_int active;      /* generations in flight */
    pthread_mutex_t mu;     /* guards the conn list */
    struct conn *conns;     /* suspended-capable conns, for shutdown */
    pthread_mutex_t smu;    /* guards the socket list and every struct sock in it */
    struct sock *socks;     /* open client sockets, for the header deadline */
};

/* One client socket (libmicrohttpd's socket_context), from accept to close.
 * The idle timeout alone lets a client that trickles a byte a second hold a
 * connection forever (slowloris); http_close_slow shuts down sockets whose
 * request (headers and body) takes longer than timeout_s in all. */
struct sock {
    int fd;
    double t_start;         /* monotonic: accepted, or the last request ended */
    bool in_request;        /* reading a request (headers and body), or waiting for the next */
    struct sock *prev, *next;
};

enum route { R_NONE, R_COMPLETIONS, R_CHAT, R_MODELS, R_HEALTH, R_METRICS, R_TOKENIZE, R_DETOKENIZE };

struct conn {
    atomic_int refs;
    pthread_mutex_t mu;
    struct http_server *h;
    struct MHD_Connection *c;
    struct conn *prev, *next;   /* in h->conns while `linked` */
    bool linked;            /* submitted: counted in h->active, in h->conns */
    enum route route;
    const char *route_name;
    int status;             /* what we answered */
    char *body;
    size_t body_len;
    bool body_too_big;
    bool responded;
    /* generation */
    struct request *req;
    enum api_kind kind;
    bool stream, include_usage;
    bool suspended, closed;
    char id[48];
    long created;
    /* streaming state */
    size_t text_sent;
    int tok_sent;
    bool first_chunk, sent_final, sent_usage, sent_done;
    char *pending;
    size_t pending_len, pending_off;
};

static void sock_set_reading(struct http_server *h, struct MHD_Connection *c, bool in_request) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct sock *sk = ci ? ci->socket_context : NULL;
    if (!sk) return;
    pthread_mutex_lock(&h->smu);
    sk->in_request = in_request;
    sk->t_start = sp_now();
    pthread_mutex_unlock(&h->smu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    struct http_server *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct sock *sk = ci ? calloc(1, sizeof(*sk)) : NULL;
        if (!sk) return;    /* no deadline for this one; the idle timeout still holds */
        sk->fd = ci->connect_fd;
        sk->t_start = sp_now();
        sk->in_request = true;
        pthread_mutex_lock(&h->smu);
        sk->next = h->socks;
        if (h->socks) h->socks->prev = sk;
        h->socks = sk;
        pthread_mutex_unlock(&h->smu);
        *socket_context = sk;
        return;
    }
    struct sock *sk = *socket_context;     /* CLOSED: before libmicrohttpd closes the fd */
    if (!sk) return;
    pthread_mutex_lock(&h->smu);
    if (sk->prev) sk->prev->next = sk->next; else h->socks = sk->next;
    if (sk->next) sk->next->prev = sk->prev;
    pthread_mutex_unlock(&h->smu);
    free(sk);
    *socket_context = NULL;
}

/* A client that sends part of its headers and hangs up at once: data and EOF
 * come in one edge of libmicrohttpd 0.9.75's epoll, it reads the data and
 * never sees the EOF, so the socket would hold a connection slot until the
 * idle timeout. Peeking finds that EOF. */
static bool sock_peer_closed(int fd) {
    char b;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

void http_close_slow(struct http_server *h) {
    const double now = sp_now();
    pthread_mutex_lock(&h->smu);
    for (struct sock *sk = h->socks; sk; sk = sk->next)
        if (sk->in_request && (now - sk->t_start > (double)h->cfg.timeout_s || sock_peer_closed(sk->fd))) {
            shutdown(sk->fd, SHUT_RDWR);    /* libmicrohttpd sees EOF and closes it */
            sk->in_request = false;
        }
    pthread_mutex_unlock(&h->smu);
}

static void conn_unref(struct conn *k) {
    if (atomic_fetch_sub(&k->refs, 1) != 1) return;
    req_unref(k->req);
    free(k->body);
    free(k->pending);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* --- responses ------------------------------------------------------------ */

static enum MHD_Result respond(struct conn *k, int status, const char *content_type, char *body) {
    if (!body) { status = 500; body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}"); }
    struct MHD_Response *r = MHD_create_response_from_buffer(body ? strlen(body) : 0, body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", content_type);
    if (status == 429 || status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    k->status = status;
    k->responded = true;
    enum MHD_Result ret = MHD_queue_response(k->c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_error(struct conn *k, const struct api_error *e) {
    return respond(k, e->status, "application/json", api_error_json(e));
}

static enum MHD_Result fail(struct conn *k, int status, const char *type, const char *param, const char *msg) {
    struct api_error e;
    api_error_set(&e, status, type, param, "%s", msg);
    return respond_error(k, &e);
}

/* One table from scheduler codes to HTTP statuses. */
static int status_of(int code) {
    switch (code) {
    case SP_EINVAL: case SP_ERANGE: return 400;
    case SP_EFULL: return 429;
    case SP_ESHUTDOWN: case SP_ENOMEM: return 503;
    default: return 500;
    }
}

/* --- engine notify (engine thread) ---------------------------------------- */

/* A parked connection is not watched by libmicrohttpd, so a client that hangs
 * up while waiting for a whole response would go unnoticed until the end.
 * The engine peeks at the socket now and then instead: EOF means gone. */
static bool peer_gone(struct conn *k) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(k->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void on_request_progress(void *arg) {
    struct conn *k = arg;
    struct req_view v;
    req_get_view(k->req, &v);
    const bool final = v.finish != REQ_FINISH_NONE;
    pthread_mutex_lock(&k->mu);
    if (!final && !k->stream && k->suspended && !k->closed && v.n_generated % 8 == 0 && peer_gone(k))
        req_cancel(k->req);     /* seen by the engine at its next step */
    if (k->suspended && !k->closed && (k->stream || final)) {
        k->suspended = false;
        MHD_resume_connection(k->c);
    }
    pthread_mutex_unlock(&k->mu);
    if (final) conn_unref(k);   /* the engine's reference */
}

/* --- streaming ------------------------------------------------------------- */

/* Next SSE event into k->pending, or false when there is nothing new yet.
 * Called with k->mu held. */
static bool next_event(struct conn *k) {
    struct http_server *h = k->h;
    const char *model = h->cfg.limits.model_name;
    struct req_view v;
    req_get_view(k->req, &v);
    char *ev = NULL;
    if (k->sent_done) return false;
    if (v.text_len > k->text_sent || (v.n_generated > k->tok_sent && v.finish == REQ_FINISH_NONE &&
                                      req_params(k->req)->n_logprobs >= 0)) {
        size_t n = v.text_len - k->text_sent;
        char *text = malloc(n + 1);
        if (!text) return false;
        n = req_copy_text(k->req, k->text_sent, text, n);
        size_t send = v.finish == REQ_FINISH_NONE ? api_stream_boundary(text, n) : n;
        if (send > 0 || req_params(k->req)->n_logprobs >= 0) {
            ev = api_chunk_sse(k->kind, k->id, k->created, model, text, send, k->req, k->tok_sent, v.n_generated,
                               NULL, h->tok, k->first_chunk);
            k->first_chunk = false;
            k->text_sent += send;
            k->tok_sent = v.n_generated;
        }
        free(text);
    }
    if (!ev && v.finish != REQ_FINISH_NONE && !k->sent_final) {
        k->sent_final = true;
        if (v.finish == REQ_FINISH_ERROR || v.finish == REQ_FINISH_CANCELLED) {
            struct api_error e;
            api_error_set(&e, v.finish == REQ_FINISH_ERROR ? 500 : 503, "server_error", NULL, "%s",
                          v.error[0] ? v.error : "the request was cancelled");
            char *j = api_error_json(&e);
            if (j && asprintf(&ev, "data: %s\n\n", j) < 0) ev = NULL;
            free(j);
        } else {
            ev = api_chunk_sse(k->kind, k->id, k->created, model, "", 0, k->req, k->tok_sent, k->tok_sent,
                               api_finish_reason(v.finish), h->tok, k->first_chunk);
        }
    }
    if (!ev && k->sent_final && k->include_usage && !k->sent_usage) {
        k->sent_usage = true;
        ev = api_usage_sse(k->kind, k->id, k->created, model, k->req);
    }
    if (!ev && k->sent_final && !k->sent_done) {
        k->sent_done = true;
        ev = strdup("data: [DONE]\n\n");
    }
    if (!ev) return false;
    free(k->pending);
    k->pending = ev;
    k->pending_len = strlen(ev);
    k->pending_off = 0;
    return true;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    struct conn *k = cls;
    pthread_mutex_lock(&k->mu);
    ssize_t n = 0;
    if (k->pending_off == k->pending_len && !next_event(k)) {
        if (k->sent_done) n = MHD_CONTENT_READER_END_OF_STREAM;
        else if (!atomic_load(&k->h->stopping)) {
            k->suspended = true;
            MHD_suspend_connection(k->c);
        }   /* stopping: the cancel lands within a step; poll until then */
    }
    if (n == 0 && k->pending_off < k->pending_len) {
        size_t c = k->pending_len - k->pending_off;
        if (c > max) c = max;
        memcpy(buf, k->pending + k->pending_off, c);
        k->pending_off += c;
        n = (ssize_t)c;
    }
    pthread_mutex_unlock(&k->mu);
    return n;
}

/* --- generation ------------------------------------------------------------- */

/* True when ip is one of the comma-separated addresses in list. */
static bool in_list(const char *list, const char *ip) {
    const size_t n = strlen(ip);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        if ((size_t)(e - p) == n && n && memcmp(p, ip, n) == 0) return true;
        p = e;
    }
    return false;
}

/* The last address of an X-Forwarded-For value (the one the trusted proxy
 * appended; earlier ones are the client's own claims) into out, if it is a
 * valid IPv4/IPv6 address. */
static bool forwarded_for(const char *xff, char *out, size_t cap) {
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ') last++;
    size_t n = strcspn(last, " ");
    if (n == 0 || n >= cap) return false;
    memcpy(out, last, n);
    out[n] = 0;
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, out, buf) == 1 || inet_pton(AF_INET6, out, buf) == 1;
}

/* Fair queuing's client name: the API key's client, else the request's
 * `user`, else the peer address, or for a trusted proxy the address it
 * forwarded for. */
static void client_name(struct conn *k, const char *auth_client, const char *user, char *out, size_t cap) {
    if (auth_client) { snprintf(out, cap, "%s", auth_client); return; }
    if (user && *user) { snprintf(out, cap, "%s", user); return; }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(k->c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN] = "unknown";
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
        else if (sa->sa_family == AF_INET6) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    }
    const char *xff = MHD_lookup_connection_value(k->c, MHD_HEADER_KIND, "X-Forwarded-For");
    char fwd[INET6_ADDRSTRLEN];
    if (xff && in_list(k->h->cfg.trusted_proxies, ip) && forwarded_for(xff, fwd, sizeof(fwd))) {
        snprintf(out, cap, "%s", fwd);
        return;
    }
    snprintf(out, cap, "%s", ip);
}

static enum MHD_Result respond_finished(struct conn *k) {
    struct req_view v;
    req_get_view(k->req, &v);
    if (v.finish == REQ_FINISH_ERROR) return fail(k, 500, "server_error", NULL, v.error);
    if (v.finish == REQ_FINISH_CANCELLED)
        return fail(k, 503, "server_error", NULL, v.error[0] ? v.error : "the request was cancelled");
    return respond(k, 200, "application/json", api_response_json(k->kind, k->id, k->created,
                                                                 k->h->cfg.limits.model_name, k->req, k->h->tok));
}

static enum MHD_Result start_generation(struct conn *k, const char *auth_client) {
    struct http_server *h = k->h;
    struct api_request ar;
    struct api_error e;
    k->kind = k->route == R_CHAT ? API_CHAT : API_COMPLETION;
    if (api_parse(k->kind, k->body ? k->body : "", k->body_len, &h->cfg.limits, h->tok, &ar, &e) != SP_OK)
        return respond_error(k, &e);
    char client[REQ_MAX_CLIENT_LEN + 1];
    client_name(k, auth_client, ar.user, client, sizeof(client));
    ar.params.client_weight = auth_client_weight(h->auth, client);
    struct sp_err err;
    k->req = req_create(ar.prompt, ar.n_prompt, &ar.params, client, &err);
    k->stream = ar.stream;
    k->include_usage = ar.include_usage;
    api_request_clear(&ar);
    if (!k->req) return fail(k, 400, "invalid_request_error", NULL, err.msg);
    snprintf(k->id, sizeof(k->id), "%s-%llu", k->kind == API_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)req_id(k->req));
    k->created = (long)time(NULL);
    k->first_chunk = true;
    req_set_notify(k->req, on_request_progress, k);
    atomic_fetch_add(&k->refs, 1);          /* the engine's reference, dropped on its final notify */
    if (atomic_load(&h->draining)) {
        conn_unref(k);
        return fail(k, 503, "server_error", NULL, "the server is shutting down");
    }
    int rc = sched_submit(h->s, k->req, &err);
    if (rc != SP_OK) {
        conn_unref(k);
        struct api_error se;
        api_error_set(&se, status_of(rc), rc == SP_EFULL ? "rate_limit_error" : rc == SP_ESHUTDOWN || rc == SP_ENOMEM ? "server_error" : "invalid_request_error",
                      rc == SP_ERANGE || rc == SP_EINVAL ? "max_tokens" : NULL, "%s", err.msg);
        if (rc == SP_ERANGE) snprintf(se.code, sizeof(se.code), "context_length_exceeded");
        return respond_error(k, &se);
    }
    atomic_fetch_add(&h->active, 1);
    pthread_mutex_lock(&h->mu);
    k->linked = true;
    k->next = h->conns;
    if (h->conns) h->conns->prev = k;
    h->conns = k;
    pthread_mutex_unlock(&h->mu);

    if (k->stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, k, NULL);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        k->status = 200;
        k->responded = true;
        enum MHD_Result ret = MHD_queue_response(k->c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    /* Whole response: park the connection until the final notify. */
    pthread_mutex_lock(&k->mu);
    struct req_view v;
    req_get_view(k->req, &v);
    enum MHD_Result ret = MHD_YES;
    if (v.finish != REQ_FINISH_NONE) ret = respond_finished(k);
    else if (atomic_load(&h->stopping)) ret = fail(k, 503, "server_error", NULL, "the server is shutting down");
    else { k->suspended = true; MHD_suspend_connection(k->c); }
    pthread_mutex_unlock(&k->mu);
    return ret;
}

/* --- routing ------------------------------------------------------------------ */

static const struct route_entry {
    const char *path, *method, *name;
    enum route route;
} route_table[] = {
    { "/v1/completions", "POST", "completions", R_COMPLETIONS },
    { "/completions", "POST", "completions", R_COMPLETIONS },
    { "/v1/chat/completions", "POST", "chat", R_CHAT },
    { "/chat/completions", "POST", "chat", R_CHAT },
    { "/v1/models", "GET", "models", R_MODELS },
    { "/health", "GET", "health", R_HEALTH },
    { "/metrics", "GET", "metrics", R_METRICS },
    { "/tokenize", "POST", "tokenize", R_TOKENIZE },
    { "/detokenize", "POST", "detokenize", R_DETOKENIZE },
};

static enum MHD_Result answer(struct conn *k, const char *auth_client) {
    struct http_server *h = k->h;
    struct api_error e;
    switch (k->route) {
    case R_COMPLETIONS: case R_CHAT:
        return start_generation(k, auth_client);
    case R_HEALTH: {
        bool ok = atomic_load(&h->ready) && !atomic_load(&h->draining);
        const char *st = !atomic_load(&h->ready) ? "loading" : atomic_load(&h->draining) ? "draining" : "ok";
        char *b = NULL;
        if (asprintf(&b, "{\"status\":\"%s\"}", st) < 0) b = NULL;
        return respond(k, ok ? 200 : 503, "application/json", b);
    }
    case R_MODELS: {
        char *b = NULL;
        if (asprintf(&b, "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\",\"created\":0,\"owned_by\":\"sparrow\"}]}",
                     h->cfg.limits.model_name) < 0) b = NULL;
        return respond(k, 200, "application/json", b);
    }
    case R_METRICS:
        return respond(k, 200, "text/plain; version=0.0.4", metrics_render(h->m, h->s, h->cfg.limits.model_name));
    case R_TOKENIZE: {
        char *b = api_tokenize(k->body ? k->body : "", k->body_len, h->tok, h->cfg.limits.max_prompt_tokens, &e);
        return b ? respond(k, 200, "application/json", b) : respond_error(k, &e);
    }
    case R_DETOKENIZE: {
        char *b = api_detokenize(k->body ? k->body : "", k->body_len, h->tok, &e);
        return b ? respond(k, 200, "application/json", b) : respond_error(k, &e);
    }
    case R_NONE: break;
    }
    return fail(k, 404, "invalid_request_error", NULL, "no such route");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    struct http_server *h = cls;
    struct conn *k = *con_cls;
    if (!k) {       /* first call: headers only */
        k = calloc(1, sizeof(*k));
        if (!k) return MHD_NO;
        atomic_init(&k->refs, 1);
        pthread_mutex_init(&k->mu, NULL);
        k->h = h;
        k->c = c;
        k->route_name = "other";
        *con_cls = k;
        bool path_known = false;
        for (size_t i = 0; i < sizeof(route_table) / sizeof(route_table[0]); i++) {
            if (strcmp(url, route_table[i].path)) continue;
            path_known = true;
            k->route_name = route_table[i].name;
            if (!strcmp(method, route_table[i].method) ||
                (!strcmp(method, "HEAD") && !strcmp(route_table[i].method, "GET")))
                k->route = route_table[i].route;
        }
        if (!path_known) return fail(k, 404, "invalid_request_error", NULL, "no such route");
        if (k->route == R_NONE) return fail(k, 405, "invalid_request_error", NULL, "method not allowed on this route");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->cfg.max_body_bytes)
            return fail(k, 413, "invalid_request_error", NULL, "the request body is larger than max_body_bytes");
        return MHD_YES;
    }
    if (k->responded) {     /* discard a body we already answered */
        if (*upload_size == 0) sock_set_reading(h, c, false);
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {     /* more body */
        if (!k->body_too_big) {
            if (k->body_len + *upload_size > h->cfg.max_body_bytes) {
                k->body_too_big = true;
                free(k->body);
                k->body = NULL;
            } else {
                char *b = realloc(k->body, k->body_len + *upload_size + 1);
                if (!b) return MHD_NO;
                memcpy(b + k->body_len, upload, *upload_size);
                k->body = b;
                k->body_len += *upload_size;
                k->body[k->body_len] = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    sock_set_reading(h, c, false);   /* the whole request is in */
    if (k->req) {   /* resumed after the final notify of a whole response, or for shutdown */
        struct req_view v;
        req_get_view(k->req, &v);
        if (v.finish == REQ_FINISH_NONE)
            return fail(k, 503, "server_error", NULL, "the server is shutting down");
        return respond_finished(k);
    }
    if (k->body_too_big) return fail(k, 413, "invalid_request_error", NULL, "the request body is larger than max_body_bytes");
    const char *auth_client = NULL;
    if (auth_enabled(h->auth) && k->route != R_HEALTH && k->route != R_METRICS) {
        const char *hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!hdr || strncmp(hdr, "Bearer ", 7))
            return fail(k, 401, "authentication_error", NULL, "missing 'Authorization: Bearer <key>' header");
        auth_client = auth_lookup(h->auth, hdr + 7, NULL);
        if (!auth_client) return fail(k, 401, "authentication_error", NULL, "invalid API key");
    }
    return answer(k, auth_client);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    struct http_server *h = cls;
    struct conn *k = *con_cls;
    sock_set_reading(h, c, true);    /* keep-alive: the next request's headers */
    if (!k) return;
    *con_cls = NULL;
    pthread_mutex_lock(&k->mu);
    k->closed = true;
    pthread_mutex_unlock(&k->mu);
    metrics_count_request(h->m, k->route_name, k->status ? k->status : 500);
    if (k->req) {
        struct req_view v;
        req_get_view(k->req, &v);
        if (v.finish == REQ_FINISH_NONE) {      /* the client left early */
            req_cancel(k->req);
            sched_wake(h->s);
        } else if (v.t_first > 0) {
            metrics_observe(h->m, v.t_first - v.t_submit,
                            v.n_generated > 1 ? (v.t_last - v.t_first) / (v.n_generated - 1) : -1.0);
        }
    }
    if (k->linked) {
        pthread_mutex_lock(&h->mu);
        if (k->prev) k->prev->next = k->next; else h->conns = k->next;
        if (k->next) k->next->prev = k->prev;
        pthread_mutex_unlock(&h->mu);
        atomic_fetch_sub(&h->active, 1);
    }
    conn_unref(k);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    fprintf(stderr, "<4>http: ");
    vfprintf(stderr, fmt, ap);
}

struct http_server *http_start(const struct http_config *cfg, struct sched *s, const struct tokenizer *tok,
                               const struct auth *a, struct metrics *m, struct sp_err *err) {
    struct http_server *h = calloc(1, sizeof(*h));
    if (!h) { sp_fail(err, SP_ENOMEM, "http: out of memory"); return NULL; }
    h->cfg = *cfg;
    h->s = s;
    h->tok = tok;
    h->auth = a;
    h->m = m;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->smu, NULL);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                            0, NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_LISTEN_SOCKET, cfg->listen_fd,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(cfg->threads > 0 ? cfg->threads : 1),
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_END);
    if (!h->d) {
        sp_fail(err, SP_EIO, "http: libmicrohttpd could not start on the listening socket");
        pthread_mutex_destroy(&h->mu);
        pthread_mutex_destroy(&h->smu);
        free(h);
        return NULL;
    }
    return h;
}

void http_set_ready(struct http_server *h) { atomic_store(&h->ready, true); }
void http_set_draining(struct http_server *h) { atomic_store(&h->draining, true); }
int http_active(struct http_server *h) { return atomic_load(&h->active); }

void http_free(struct http_server *h) {
    if (!h) return;
    /* libmicrohttpd must not be stopped with suspended connections: cancel
     * every request, resume its connection (readers no longer park it), and
     * give the engine a moment to finish the cancelled requests so their
     * clients get an error event or a 503 rather than a cut connection. */
    atomic_store(&h->stopping, true);
    pthread_mutex_lock(&h->mu);
    for (struct conn *k = h->conns; k; k = k->next) {
        req_cancel(k->req);
        pthread_mutex_lock(&k->mu);
        if (k->suspended) { k->suspended = false; MHD_resume_connection(k->c); }
        pthread_mutex_unlock(&k->mu);
    }
    pthread_mutex_unlock(&h->mu);
    sched_wake(h->s);
    for (int i = 0; i < 200 && atomic_load(&h->active) > 0; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->smu);
    free(h);
}
