/* service.h - the daemon's systemd integration on libsystemd: the listening
 * socket (inherited through socket activation, or bound here), readiness and
 * status notifications, and the watchdog keep-alive. Outside systemd every
 * notify call is a no-op, so `sparrow serve` runs the same from a shell.
 * Notify failures are ignored on purpose: a lost status line must never stop
 * the server. This module knows nothing of HTTP; server/main.c hands the fd to
 * server/http.c and decides when to call what.
 * Thread-safety: main thread only (svc_listen also edits the environment). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "config/err.h"

/* The listening socket. Under socket activation (LISTEN_FDS/LISTEN_PID name
 * this process) the first passed fd is used and host/port are ignored: the
 * .socket unit's ListenStream= wins; *activated is set true, the LISTEN_*
 * variables are unset so children do not inherit them, and passed fds beyond
 * the first are closed. A passed fd that is not a listening stream socket is
 * SP_EINVAL (a misconfigured .socket unit), never silently replaced.
 * Otherwise binds host:port itself: host is an IPv4 or IPv6 literal or a name
 * ("localhost": its addresses are tried in order, the first that binds is
 * used), NULL or "" means all addresses; port 0 picks an ephemeral port (see
 * svc_bound_port); backlog <= 0 means SOMAXCONN; SO_REUSEADDR is set.
 * Either way the fd is non-blocking and close-on-exec, and the caller owns it
 * (close() it when done).
 * Returns SP_OK, SP_EINVAL (bad port, unknown host, bad passed fd) or SP_EIO
 * (socket/bind/listen failed), with err naming host:port and the errno text. */
int svc_listen(const char *host, int port, int backlog, int *fd_out, bool *activated,
               struct sp_err *err);
/* The local port fd is bound to (IPv4 or IPv6), or -1 if it is not such a socket. */
int svc_bound_port(int fd);

/* READY=1, plus STATUS=status unless NULL (one line, as below): call once the
 * model is loaded and the socket accepts; `systemctl start` waits until then
 * (Type=notify). */
void svc_notify_ready(const char *status);
/* STATUS=<printf text>: one line for `systemctl status` (newlines become spaces,
 * long text is cut at 255 bytes). */
void svc_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* STOPPING=1: the drain has begun. */
void svc_notify_stopping(void);
/* WATCHDOG=1: call at least every svc_watchdog_usec() / 2 while healthy. */
void svc_watchdog_ping(void);
/* The watchdog interval systemd expects (WatchdogSec=) in microseconds, or 0
 * when there is no watchdog for this process. */
uint64_t svc_watchdog_usec(void);
