/* fuzz_http.c - libFuzzer harness for the HTTP front-end (server/http.c on
 * libmicrohttpd): every input is written as a raw HTTP/1.x request stream
 * (headers, bodies, chunked encoding, pipelining: whatever the bytes say) to
 * a real server on 127.0.0.1, then the write side is shut and the answer read
 * to EOF. Properties: no crash, leak or hang (a hang is libFuzzer's -timeout);
 * a non-empty answer starts with "HTTP/1.".
 * The server is started once per process, as server/main.c does: the real
 * stories260K model and tokenizer from $SPARROW_SHARED/models/stories260K-f32.gguf
 * (default ../shared), a small scheduler on its own engine thread, no API
 * keys, small limits (4 KB bodies, 1 s timeout, max_tokens at most 8), and a
 * thread calling http_close_slow every 20 ms (MHD leaves a half-closed keep-alive connection open until then). */
#include "tests/fuzz/fuzz_common.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "engine/model.h"
#include "engine/tokenizer.h"
#include "scheduler/batcher.h"
#include "server/auth.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/service.h"

#define FUZZ_HTTP_MAX_INPUT 8192

static struct model *model;
static struct tokenizer *tok;
static struct sched *sched;
static struct metrics *metrics;
static struct auth *auth;
static struct http_server *http;
static int port = -1;

static void *engine_main(void *arg) {
    sched_run(arg);
    return NULL;
}

static void *slow_main(void *arg) {
    for (;;) {
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        http_close_slow(arg);
    }
    return NULL;
}

static void die(const char *what, const struct sp_err *err) {
    fprintf(stderr, "fuzz_http: %s: %s\n", what, err ? err->msg : "");
    exit(1);
}

static void start_once(void) {
    if (http) return;
    signal(SIGPIPE, SIG_IGN);
    char path[4096];
    struct sp_err err = {0};
    snprintf(path, sizeof(path), "%s/models/stories260K-f32.gguf", fuzz_shared_dir());
    model = model_load(path, &err);
    tok = model ? tok_create(model_gguf(model), &err) : NULL;
    if (!tok) die(path, &err);
    if (!(auth = auth_load(NULL, NULL, &err))) die("auth_load", &err);
    if (!(metrics = metrics_create())) die("metrics_create", NULL);
    const struct sched_config sc = {
        .max_running = 4, .max_batch_tokens = 256, .n_ctx = 256, .block_size = 16,
        .kv_blocks = 64, .threads = 1,
        .queue = { QUEUE_FCFS, 16, 16, 1.0, 2.0, -1.0, 256.0 },
    };
    if (!(sched = sched_create(model, tok, &sc, &err))) die("sched_create", &err);
    pthread_t t;
    if (pthread_create(&t, NULL, engine_main, sched) != 0) die("engine thread", NULL);
    pthread_detach(t);
    int fd = -1;
    bool activated = false;
    if (svc_listen("127.0.0.1", 0, 0, &fd, &activated, &err) != SP_OK) die("svc_listen", &err);
    port = svc_bound_port(fd);
    const struct http_config hc = {
        .listen_fd = fd, .threads = 1, .max_connections = 16, .timeout_s = 1, .max_body_bytes = 4096,
        .limits = { .max_tokens_limit = 8, .max_prompt_tokens = sc.n_ctx - 1, .model_name = "stories260K-f32",
                    .chat_template = "{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}" },
    };
    if (!(http = http_start(&hc, sched, tok, auth, metrics, &err))) die("http_start", &err);
    http_set_ready(http);
    if (pthread_create(&t, NULL, slow_main, http) != 0) die("close-slow thread", NULL);
    pthread_detach(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    start_once();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    start_once();     /* the replay build never calls LLVMFuzzerInitialize */
    if (size > FUZZ_HTTP_MAX_INPUT) size = FUZZ_HTTP_MAX_INPUT;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_REQUIRE(s >= 0);
    struct timeval tv = { 2, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    FUZZ_REQUIRE(connect(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    size_t off = 0;
    while (off < size) {    /* the server may answer and close early: stop writing then */
        ssize_t w = send(s, data + off, size - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    shutdown(s, SHUT_WR);
    char head[8];
    size_t got = 0;
    char buf[4096];
    for (;;) {
        ssize_t r = recv(s, buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;  /* EOF, reset, or the 2 s receive timeout */
        for (ssize_t i = 0; i < r && got < sizeof(head); i++) head[got++] = buf[i];
    }
    close(s);
    if (got > 0) FUZZ_REQUIRE(memcmp(head, "HTTP/1.", got < 7 ? got : 7) == 0);
    return 0;
}
