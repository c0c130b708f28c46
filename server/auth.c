/* auth.c - see auth.h. */
#include "server/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/request.h"

#define AUTH_MAX_KEY 256

struct auth_entry {
    char key[AUTH_MAX_KEY + 1];
    char client[REQ_MAX_CLIENT_LEN + 1];
    double weight;
};

struct auth {
    struct auth_entry *e;
    int n, cap;
};

static int add(struct auth *a, const char *key, const char *client, double weight, struct sp_err *err) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 8;
        struct auth_entry *t = realloc(a->e, sizeof(*t) * (size_t)cap);
        if (!t) return sp_fail(err, SP_ENOMEM, "auth: out of memory");
        a->e = t;
        a->cap = cap;
    }
    struct auth_entry *x = &a->e[a->n++];
    snprintf(x->key, sizeof(x->key), "%s", key);
    snprintf(x->client, sizeof(x->client), "%s", client);
    x->weight = weight;
    return SP_OK;
}

struct auth *auth_load(const char *path, const char *single_key, struct sp_err *err) {
    struct auth *a = calloc(1, sizeof(*a));
    if (!a) { sp_fail(err, SP_ENOMEM, "auth: out of memory"); return NULL; }
    if (single_key && *single_key && add(a, single_key, "default", 1.0, err) != SP_OK) goto fail;
    if (!path || !*path) return a;
    FILE *f = fopen(path, "r");
    if (!f) { sp_fail(err, SP_EIO, "api_keys: cannot open '%s': %s", path, strerror(errno)); goto fail; }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char key[AUTH_MAX_KEY + 2], client[REQ_MAX_CLIENT_LEN + 2], extra[2];
        double weight = 1.0;
        int n = sscanf(line, "%257s %65s %lf %1s", key, client, &weight, extra);
        if (n <= 0) continue;
        if (n < 2 || n > 3 || strlen(key) > AUTH_MAX_KEY || strlen(client) > REQ_MAX_CLIENT_LEN ||
            !(weight > 0 && weight <= 1000)) {
            sp_fail(err, SP_EINVAL, "%s:%d: expected `KEY CLIENT [WEIGHT]` (key <= %d bytes, client <= %d, weight in (0, 1000])",
                    path, lineno, AUTH_MAX_KEY, REQ_MAX_CLIENT_LEN);
            fclose(f);
            goto fail;
        }
        if (add(a, key, client, weight, err) != SP_OK) { fclose(f); goto fail; }
    }
    fclose(f);
    if (a->n == 0) { sp_fail(err, SP_EINVAL, "api_keys: '%s' holds no key", path); goto fail; }
    return a;
fail:
    auth_free(a);
    return NULL;
}

void auth_free(struct auth *a) {
    if (!a) return;
    free(a->e);
    free(a);
}

bool auth_enabled(const struct auth *a) { return a->n > 0; }

static bool same_key(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i < lb ? i : 0]);
    return diff == 0;
}

const char *auth_lookup(const struct auth *a, const char *key, double *weight) {
    const struct auth_entry *found = NULL;
    for (int i = 0; i < a->n; i++)
        if (same_key(a->e[i].key, key) && !found) found = &a->e[i];
    if (found && weight) *weight = found->weight;
    return found ? found->client : NULL;
}

double auth_client_weight(const struct auth *a, const char *client) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->e[i].client, client)) return a->e[i].weight;
    return 1.0;
}
