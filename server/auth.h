/* auth.h - API keys: a file of `KEY CLIENT [WEIGHT]` lines ('#' comments)
 * mapping each bearer key to the client name fair queuing uses and that
 * client's weight (default 1). With no keys configured every request is
 * allowed and clients are named by the `user` field or the peer address.
 * Ownership: the caller owns the table; lookups borrow its strings.
 * Thread-safety: read-only after load, any thread. */
#pragma once
#include <stdbool.h>

#include "config/err.h"

struct auth;                /* opaque */

/* path may be NULL/empty and single_key NULL/empty; both empty = no auth. */
struct auth *auth_load(const char *path, const char *single_key, struct sp_err *err);
void auth_free(struct auth *a);                          /* NULL is fine */
bool auth_enabled(const struct auth *a);
/* Client name for a key, or NULL if the key is unknown. Compares in
 * constant time per key so a key cannot be guessed byte by byte. */
const char *auth_lookup(const struct auth *a, const char *key, double *weight);
/* Weight of a client name (1 if unknown). */
double auth_client_weight(const struct auth *a, const char *client);
