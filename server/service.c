/* service.c - see service.h. The notify protocol is systemd's: newline-separated
 * KEY=VALUE assignments in one datagram to $NOTIFY_SOCKET (sd_notify(3)). */
#include "server/service.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

/* "host:port", with brackets around an IPv6 literal, for error messages. */
static void format_addr(char *buf, size_t n, const char *host, int port) {
    if (!host || !*host) host = "*";
    if (strchr(host, ':')) snprintf(buf, n, "[%s]:%d", host, port);
    else snprintf(buf, n, "%s:%d", host, port);
}

static int set_nonblock_cloexec(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) return -1;
    return 0;
}

/* The first fd systemd passed. Extra fds (a .socket unit with several
 * ListenStream= lines) are ours but unused, so they are closed. */
static int take_activated(int n, int *fd_out, struct sp_err *err) {
    int fd = SD_LISTEN_FDS_START;
    for (int i = 1; i < n; i++) close(SD_LISTEN_FDS_START + i);
    int r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
    if (r <= 0) {
        close(fd);
        return sp_fail(err, SP_EINVAL, "svc: socket activation passed fd %d, which is not a "
                       "listening stream socket%s%s (check ListenStream= in the .socket unit)",
                       fd, r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
    }
    if (set_nonblock_cloexec(fd) < 0) {
        int e = errno;
        close(fd);
        return sp_fail(err, SP_EIO, "svc: socket-activated fd %d: fcntl: %s", fd, strerror(e));
    }
    *fd_out = fd;
    return SP_OK;
}

/* One address from getaddrinfo: socket, SO_REUSEADDR, bind, listen. Returns
 * the fd, or -1 with *what naming the failed step and errno kept. */
static int listen_one(const struct addrinfo *ai, int backlog, const char **what) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) { *what = "socket"; return -1; }
    int one = 1, e;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        *what = "setsockopt(SO_REUSEADDR)";
        goto out_close;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) { *what = "bind"; goto out_close; }
    if (listen(fd, backlog) < 0) { *what = "listen"; goto out_close; }
    return fd;
out_close:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

int svc_listen(const char *host, int port, int backlog, int *fd_out, bool *activated,
               struct sp_err *err) {
    char where[300];
    format_addr(where, sizeof(where), host, port);
    *fd_out = -1;
    *activated = false;

    int n = sd_listen_fds(1);   /* 1: unset LISTEN_* so children do not see them */
    if (n < 0)
        return sp_fail(err, SP_EINVAL, "svc: bad socket activation environment "
                       "(LISTEN_FDS/LISTEN_PID): %s", strerror(-n));
    if (n > 0) {
        int rc = take_activated(n, fd_out, err);
        if (rc == SP_OK) *activated = true;
        return rc;
    }

    if (port < 0 || port > 65535)
        return sp_fail(err, SP_EINVAL, "svc: cannot listen on %s: port must be 0..65535",
                       where);
    if (backlog <= 0) backlog = SOMAXCONN;
    char port_str[8];
    snprintf(port_str, sizeof(port_str), "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host && *host ? host : NULL, port_str, &hints, &res);
    if (g != 0)
        return sp_fail(err, SP_EINVAL, "svc: cannot listen on %s: %s", where,
                       g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));

    /* "localhost" may resolve to ::1 and 127.0.0.1; the first that binds wins. */
    const char *what = "bind";
    int e = EADDRNOTAVAIL;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = listen_one(ai, backlog, &what);
        if (fd >= 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return SP_OK;
        }
        e = errno;
    }
    freeaddrinfo(res);
    return sp_fail(err, SP_EIO, "svc: cannot listen on %s: %s: %s", where, what, strerror(e));
}

int svc_bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static bool notify_enabled(void) {
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
}

/* A newline would start a new assignment in the datagram. */
static void one_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

void svc_notify_ready(const char *status) {
    if (!notify_enabled()) return;
    if (!status) { sd_notify(0, "READY=1"); return; }
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", status);
    one_line(buf);
    sd_notifyf(0, "READY=1\nSTATUS=%s", buf);
}

void svc_notify_status(const char *fmt, ...) {
    if (!notify_enabled()) return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    one_line(buf);
    sd_notifyf(0, "STATUS=%s", buf);
}

void svc_notify_stopping(void) {
    if (notify_enabled()) sd_notify(0, "STOPPING=1");
}

void svc_watchdog_ping(void) {
    if (notify_enabled()) sd_notify(0, "WATCHDOG=1");
}

uint64_t svc_watchdog_usec(void) {
    uint64_t usec = 0;
    /* > 0 only if WATCHDOG_USEC is set and WATCHDOG_PID (if set) is us. */
    if (sd_watchdog_enabled(0, &usec) > 0) return usec;
    return 0;
}
