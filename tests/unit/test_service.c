/* test_service.c - systemd glue: binding (ephemeral port, port in use, bad
 * host), socket activation through LISTEN_FDS, and the exact notify datagrams
 * on a NOTIFY_SOCKET this test owns. Loopback only. */
#include "tests/unit/check.h"
#include "server/service.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A blocking client connect to 127.0.0.1:port; true if it was accepted
 * into the listen queue. */
static bool can_connect(int port) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0) return false;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(c);
    return ok;
}

/* A listening socket on 127.0.0.1, ephemeral port, made without svc_. */
static int plain_listener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = svc_bound_port(fd);
    return fd;
}

static void test_listen_ephemeral_accepts(void) {
    struct sp_err err = {0};
    int fd = -1;
    bool act = true;
    CHECK_EQ(svc_listen("127.0.0.1", 0, 16, &fd, &act, &err), SP_OK);
    CHECK(fd >= 0);
    CHECK(!act);
    if (fd < 0) return;
    int port = svc_bound_port(fd);
    CHECK(port > 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int listening = 0;
    socklen_t len = sizeof(listening);
    CHECK_EQ(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len), 0);
    CHECK_EQ(listening, 1);
    CHECK(can_connect(port));
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK_EQ(poll(&p, 1, 5000), 1);
    int a = accept(fd, NULL, NULL);
    CHECK(a >= 0);
    if (a >= 0) close(a);
    close(fd);
}

static void test_listen_port_in_use_names_port(void) {
    struct sp_err err = {0};
    int fd1 = -1, fd2 = -1;
    bool act;
    CHECK_EQ(svc_listen("127.0.0.1", 0, 0, &fd1, &act, &err), SP_OK);
    if (fd1 < 0) return;
    int port = svc_bound_port(fd1);
    CHECK_EQ(svc_listen("127.0.0.1", port, 0, &fd2, &act, &err), SP_EIO);
    CHECK_EQ(fd2, -1);
    CHECK_EQ(err.code, SP_EIO);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    CHECK(strstr(err.msg, want) != NULL);
    CHECK(strstr(err.msg, strerror(EADDRINUSE)) != NULL);
    if (!strstr(err.msg, want)) fprintf(stderr, "  msg: %s\n", err.msg);
    if (fd2 >= 0) close(fd2);
    close(fd1);
}

static void test_listen_names_and_bad_input(void) {
    struct sp_err err = {0};
    int fd = -1;
    bool act;
    /* localhost resolves; whichever family binds first must give a port. */
    CHECK_EQ(svc_listen("localhost", 0, 0, &fd, &act, &err), SP_OK);
    if (fd >= 0) { CHECK(svc_bound_port(fd) > 0); close(fd); }
    /* IPv6 loopback, if this host has it. */
    fd = -1;
    int rc = svc_listen("::1", 0, 0, &fd, &act, &err);
    if (rc == SP_OK) { CHECK(svc_bound_port(fd) > 0); close(fd); }
    else CHECK(strstr(err.msg, "[::1]:0") != NULL);

    fd = -1;
    CHECK_EQ(svc_listen("127.0.0.1", 70000, 0, &fd, &act, &err), SP_EINVAL);
    CHECK(strstr(err.msg, "127.0.0.1:70000") != NULL);
    CHECK_EQ(fd, -1);
    CHECK_EQ(svc_listen("999.1.2.3", 8080, 0, &fd, &act, &err), SP_EINVAL);
    CHECK(strstr(err.msg, "999.1.2.3:8080") != NULL);
    CHECK_EQ(fd, -1);
    CHECK_EQ(svc_bound_port(-1), -1);
}

/* Socket activation: fd 3 as systemd would pass it. Whatever the process had
 * on fd 3 is saved and put back afterwards. */
static int save_fd3(void) { return fcntl(3, F_GETFD) >= 0 ? fcntl(3, F_DUPFD_CLOEXEC, 10) : -1; }
static void restore_fd3(int saved) {
    if (saved >= 0) { dup2(saved, 3); close(saved); }
    else close(3);
}
static void set_listen_env(const char *n_fds, pid_t pid) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%ld", (long)pid);
    setenv("LISTEN_FDS", n_fds, 1);
    setenv("LISTEN_PID", buf, 1);
}

static void test_socket_activation_uses_fd3(void) {
    int saved = save_fd3();
    int port = 0;
    int lfd = plain_listener(&port);
    CHECK(lfd >= 0);
    if (lfd < 0) { restore_fd3(saved); return; }
    if (lfd != 3) {              /* fd 3 may have been free, so lfd may be it */
        CHECK_EQ(dup2(lfd, 3), 3);
        close(lfd);
    }
    set_listen_env("1", getpid());

    struct sp_err err = {0};
    int fd = -1;
    bool act = false;
    CHECK_EQ(svc_listen("127.0.0.1", 1, 0, &fd, &act, &err), SP_OK);   /* port ignored */
    if (fd != 3) fprintf(stderr, "  msg: %s\n", err.msg);
    CHECK_EQ(fd, 3);
    CHECK(act);
    CHECK_EQ(svc_bound_port(3), port);
    CHECK(fcntl(3, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(3, F_GETFD) & FD_CLOEXEC);
    CHECK(getenv("LISTEN_FDS") == NULL);    /* children must not inherit it */
    CHECK(getenv("LISTEN_PID") == NULL);
    CHECK(can_connect(port));
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    restore_fd3(saved);
}

static void test_socket_activation_other_pid_or_bad_fd(void) {
    struct sp_err err = {0};
    int fd = -1;
    bool act = true;
    /* LISTEN_PID of another process: not for us, bind normally. */
    set_listen_env("1", getpid() + 1);
    CHECK_EQ(svc_listen("127.0.0.1", 0, 0, &fd, &act, &err), SP_OK);
    CHECK(!act);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);

    /* A datagram socket on fd 3 is a broken .socket unit: an error. */
    int saved = save_fd3();
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(d >= 0);
    if (d != 3) {
        CHECK_EQ(dup2(d, 3), 3);
        close(d);
    }
    set_listen_env("1", getpid());
    fd = -1;
    CHECK_EQ(svc_listen("127.0.0.1", 0, 0, &fd, &act, &err), SP_EINVAL);
    CHECK_EQ(fd, -1);
    CHECK(!act);
    CHECK(strstr(err.msg, "fd 3") != NULL);
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    restore_fd3(saved);
}

/* A NOTIFY_SOCKET of our own: a unix datagram socket in a temp dir. */
struct notify_sink {
    char dir[32];
    char path[96];    /* fits sockaddr_un.sun_path (108) */
    int fd;
};

static bool sink_open(struct notify_sink *s) {
    snprintf(s->dir, sizeof(s->dir), "/tmp/sparrow-svc-XXXXXX");
    if (!mkdtemp(s->dir)) return false;
    snprintf(s->path, sizeof(s->path), "%s/notify", s->dir);
    s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) return false;
    setenv("NOTIFY_SOCKET", s->path, 1);
    return true;
}

static void sink_close(struct notify_sink *s) {
    unsetenv("NOTIFY_SOCKET");
    if (s->fd >= 0) close(s->fd);
    unlink(s->path);
    rmdir(s->dir);
}

/* The next datagram, NUL-terminated, or "" after 2 s of silence. */
static const char *sink_recv(struct notify_sink *s, char *buf, size_t n) {
    struct pollfd p = { .fd = s->fd, .events = POLLIN };
    buf[0] = '\0';
    if (poll(&p, 1, 2000) != 1) return buf;
    ssize_t r = recv(s->fd, buf, n - 1, 0);
    buf[r > 0 ? r : 0] = '\0';
    return buf;
}

static bool sink_empty(struct notify_sink *s) {
    struct pollfd p = { .fd = s->fd, .events = POLLIN };
    return poll(&p, 1, 0) == 0;
}

static void test_notify_datagrams(void) {
    struct notify_sink s = { .fd = -1 };
    bool ok = sink_open(&s);
    CHECK(ok);
    if (!ok) { sink_close(&s); return; }
    char buf[512];

    svc_notify_ready("ready");
    sink_recv(&s, buf, sizeof(buf));
    CHECK(strstr(buf, "READY=1") != NULL);
    CHECK(strstr(buf, "STATUS=ready") != NULL);

    svc_notify_ready(NULL);
    CHECK_STR(sink_recv(&s, buf, sizeof(buf)), "READY=1");

    svc_notify_status("loaded %d layers\nEVIL=1", 6);   /* must stay one assignment */
    CHECK_STR(sink_recv(&s, buf, sizeof(buf)), "STATUS=loaded 6 layers EVIL=1");

    svc_watchdog_ping();
    CHECK_STR(sink_recv(&s, buf, sizeof(buf)), "WATCHDOG=1");

    svc_notify_stopping();
    CHECK_STR(sink_recv(&s, buf, sizeof(buf)), "STOPPING=1");
    CHECK(sink_empty(&s));

    /* Without NOTIFY_SOCKET nothing is sent, and nothing fails. */
    unsetenv("NOTIFY_SOCKET");
    svc_notify_ready("x");
    svc_notify_status("y");
    svc_watchdog_ping();
    svc_notify_stopping();
    CHECK(sink_empty(&s));
    sink_close(&s);
}

static void test_watchdog_usec(void) {
    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    CHECK_EQ(svc_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "2000000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    CHECK_EQ(svc_watchdog_usec(), 2000000);
    CHECK_EQ(svc_watchdog_usec(), 2000000);   /* env kept: asking twice works */
    snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);             /* meant for another process */
    CHECK_EQ(svc_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

int main(void) {
    /* The runner may itself run under systemd: start from a clean slate. */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    RUN(test_listen_ephemeral_accepts);
    RUN(test_listen_port_in_use_names_port);
    RUN(test_listen_names_and_bad_input);
    RUN(test_socket_activation_uses_fd3);
    RUN(test_socket_activation_other_pid_or_bad_fd);
    RUN(test_notify_datagrams);
    RUN(test_watchdog_usec);
    return check_report();
}
