/* auth_limit: who the client is (its address behind trusted proxies) and
 * the fixed-window counters in Redis of the requests that send account
 * emails. */
#include "studyhub/http/auth_limit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/server.h"
#include "studyhub/io/redis.h"

/* Redis script (EVAL: atomic, one round trip). */
/* Counts one attempt on each key; the window starts at the first.  A key
 * found without a TTL (it should not happen) gets one, so no counter can
 * lock anyone out forever.  Returns {n1, ttl1, n2, ttl2, ...}. */
static const char rate_script[] =
    "local out = {} "
    "for i, k in ipairs(KEYS) do "
    "  local n = redis.call('INCR', k) "
    "  local t = redis.call('TTL', k) "
    "  if t < 0 then redis.call('EXPIRE', k, ARGV[1]); t = tonumber(ARGV[1]) end "
    "  out[#out + 1] = n; out[#out + 1] = t "
    "end "
    "return out";

void auth_reply_rate_limited(struct http_req *req, long retry_after_s)
{
    char ra[24];
    if (retry_after_s < 1)
        retry_after_s = 1;
    snprintf(ra, sizeof ra, "%ld", retry_after_s);
    http_add_header(req, "Retry-After", ra);
    jsonapi_reply_errorf(req, 429, "too_many_attempts", NULL,
                         "Too many failed attempts. Try again in %ld second%s.",
                         retry_after_s, retry_after_s == 1 ? "" : "s");
}

/* Trims spaces and tabs around [*s, *s + *len). */
static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t'))
        (*s)++, (*len)--;
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

void auth_client_addr_of(const struct config *cfg, const char *peer,
                         const char *xff, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", peer ? peer : "");
    if (!xff || !cfg->n_trusted_proxies || !peer ||
        !config_addr_in(cfg->trusted_proxies_list, cfg->n_trusted_proxies, peer))
        return;
    /* Right to left: each trusted proxy appended the address it got the
     * request from; the first one no trusted proxy vouches for is the
     * client.  Anything left of it the client may have made up. */
    size_t end = strlen(xff);
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        const char *item = xff + start;
        size_t len = end - start;
        char ip[INET6_ADDRSTRLEN + 1];
        unsigned char bin[16];
        trim(&item, &len);
        if (len == 0 || len >= sizeof ip)
            return;                  /* malformed: keep the last good one */
        memcpy(ip, item, len);
        ip[len] = '\0';
        if (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1)
            return;
        snprintf(out, outlen, "%s", ip);
        if (!config_addr_in(cfg->trusted_proxies_list, cfg->n_trusted_proxies, ip))
            return;
        end = start > 0 ? start - 1 : 0;
    }
}

void auth_client_addr(const struct http_req *req, const struct app *app,
                      char *out, size_t outlen)
{
    auth_client_addr_of(app->cfg, http_req_peer(req),
                        http_req_header(req, "X-Forwarded-For"), out, outlen);
}

void auth_account_key(char *out, size_t outlen, const char *prefix, const char *email)
{
    size_t n;

    if (outlen == 0)
        return;
    n = (size_t)snprintf(out, outlen, "%s", prefix);
    if (n >= outlen)
        return;                 /* the prefix alone filled it (truncated, NUL-ended) */
    for (const char *p = email ? email : ""; *p && n + 1 < outlen; p++)
        out[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
    out[n] = '\0';
}

void auth_rate_keys(struct auth_rate_key keys[2], struct http_req *req,
                    const struct app *app, const char *scope,
                    const char *email)
{
    char addr[INET6_ADDRSTRLEN + 1], prefix[64];

    snprintf(prefix, sizeof prefix, "rl:%s:acct:", scope);
    auth_account_key(keys[0].key, sizeof keys[0].key, prefix, email);
    keys[0].max = app->cfg->mail_rate_account_max;
    auth_client_addr(req, app, addr, sizeof addr);
    snprintf(keys[1].key, sizeof keys[1].key, "rl:%s:addr:%s", scope, addr);
    keys[1].max = app->cfg->mail_rate_addr_max;
}

/* One auth_rate_hit in flight. */
struct rate_ctx {
    auth_rate_fn fn;              /* the caller's verdict callback */
    void *arg;                    /* borrowed */
    long max[4];                  /* limit of each key */
    int nkeys;
};

static void rate_done(redisReply *reply, void *arg)
{
    struct rate_ctx *rc = arg;
    enum auth_rate_verdict v = AUTH_RATE_OK;
    long retry = 0;

    if (!reply || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != (size_t)(2 * rc->nkeys)) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_error("auth: redis rate script: %s", reply->str);
        v = AUTH_RATE_UNAVAILABLE;
        goto out;
    }
    for (int i = 0; i < rc->nkeys; i++) {
        long long n = reply->element[2 * i]->integer;
        long long ttl = reply->element[2 * i + 1]->integer;
        if (n > rc->max[i]) {
            v = AUTH_RATE_LIMITED;
            if (ttl > retry)
                retry = (long)ttl;
        }
    }
out:
    rc->fn(v, retry, rc->arg);
    free(rc);
}

int auth_rate_hit(struct app *app, const struct auth_rate_key *keys,
                  int nkeys, auth_rate_fn fn, void *arg)
{
    const char *argv[8];
    size_t argl[8];
    char nk[8], window[24];
    struct rate_ctx *rc;

    if (nkeys < 1 || nkeys > 4)
        return -1;
    rc = calloc(1, sizeof *rc);
    if (!rc)
        return -1;
    rc->fn = fn;
    rc->arg = arg;
    rc->nkeys = nkeys;
    snprintf(nk, sizeof nk, "%d", nkeys);
    snprintf(window, sizeof window, "%ld", app->cfg->login_rate_window_s);
    argv[0] = "EVAL";
    argv[1] = rate_script;
    argv[2] = nk;
    for (int i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i].key;
        rc->max[i] = keys[i].max;
    }
    argv[3 + nkeys] = window;
    for (int i = 0; i < 4 + nkeys; i++)
        argl[i] = strlen(argv[i]);
    if (redis_cmdargv(app->redis, rate_done, rc, 4 + nkeys, argv, argl) != 0) {
        free(rc);
        return -1;
    }
    return 0;
}
