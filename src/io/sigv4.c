/* sigv4: AWS Signature Version 4 (HMAC-SHA256 with OpenSSL) for S3-style
 * requests and presigned URLs, following S3's rules: the path is encoded
 * once, segment by segment, and never normalised. */
#include "config.h"

#include "studyhub/io/sigv4.h"
#include "studyhub/core/util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing string.  `oom` sticks: later appends are ignored and
 * sb_take() returns NULL, so callers check once at the end. */
struct sb {
    char *buf;  /* owned */
    size_t len;
    size_t cap;
    bool oom;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_chr(struct sb *b, char c)
{
    sb_add(b, &c, 1);
}

static char *sb_take(struct sb *b)
{
    if (b->oom || !b->buf) {
        free(b->buf);
        b->buf = NULL;
        return b->oom ? NULL : strdup("");
    }
    char *s = b->buf;
    b->buf = NULL;
    return s;
}

static void sb_uri_encode(struct sb *b, const char *s, size_t len, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
            c == '~' || (keep_slash && c == '/')) {
            sb_chr(b, (char)c);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            sb_add(b, e, 3);
        }
    }
}

void sigv4_hmac_sha256(const void *key, size_t keylen, const void *data,
                       size_t len, uint8_t out[32])
{
    unsigned int outlen = 32;
    HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen);
}

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

char *sigv4_uri_encode(const char *s, size_t len, bool keep_slash)
{
    struct sb b = { 0 };
    sb_uri_encode(&b, s, len, keep_slash);
    return sb_take(&b);
}

/* One encoded query pair or one lower-cased header, sorted below. */
struct item {
    char *name;  /* owned */
    char *value; /* owned */
};

static int item_cmp(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static void items_free(struct item *it, size_t n)
{
    if (!it)
        return;
    for (size_t i = 0; i < n; i++) {
        free(it[i].name);
        free(it[i].value);
    }
    free(it);
}

/* Query parameters encoded (both name and value, '/' too) and sorted by
 * encoded name then value, as SigV4 wants. */
static struct item *query_items(const struct sigv4_pair *q, size_t n)
{
    struct item *it = calloc(n ? n : 1, sizeof *it);
    if (!it)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *v = q[i].value ? q[i].value : "";
        it[i].name = sigv4_uri_encode(q[i].name, strlen(q[i].name), false);
        it[i].value = sigv4_uri_encode(v, strlen(v), false);
        if (!it[i].name || !it[i].value) {
            items_free(it, n);
            return NULL;
        }
    }
    qsort(it, n, sizeof *it, item_cmp);
    return it;
}

static void sb_query(struct sb *b, const struct item *it, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_chr(b, '&');
        sb_str(b, it[i].name);
        sb_chr(b, '=');
        sb_str(b, it[i].value);
    }
}

char *sigv4_canonical_query(const struct sigv4_pair *q, size_t n)
{
    struct sb b = { 0 };
    struct item *it = query_items(q, n);

    if (!it)
        return NULL;
    sb_query(&b, it, n);
    items_free(it, n);
    return sb_take(&b);
}

/* A header value trimmed, with runs of spaces inside collapsed to one. */
static char *trim_value(const char *v)
{
    struct sb b = { 0 };
    bool space = false;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space && b.len)
            sb_chr(&b, ' ');
        space = false;
        sb_chr(&b, *v);
    }
    return sb_take(&b);
}

/* Headers lower-cased, trimmed and sorted by name (stable for equal names
 * is not needed: S3 clients never sign a repeated header). */
static struct item *header_items(const struct sigv4_pair *h, size_t n)
{
    struct item *it = calloc(n ? n : 1, sizeof *it);
    if (!it)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        it[i].name = strdup(h[i].name);
        it[i].value = trim_value(h[i].value ? h[i].value : "");
        if (!it[i].name || !it[i].value) {
            items_free(it, n);
            return NULL;
        }
        for (char *p = it[i].name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    qsort(it, n, sizeof *it, item_cmp);
    return it;
}

static void sb_signed_headers(struct sb *b, const struct item *it, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_chr(b, ';');
        sb_str(b, it[i].name);
    }
}

/* The canonical request, with the signed-headers list also returned when
 * signed_headers is not NULL. */
static char *canonical(const struct sigv4_request *r, char **signed_headers)
{
    struct sb b = { 0 }, sh = { 0 };
    struct item *q = NULL, *h = NULL;
    char *out = NULL;

    if (!r->method || !r->path || !r->payload_hash)
        goto out;
    q = query_items(r->query, r->nquery);
    h = header_items(r->headers, r->nheaders);
    if (!q || !h)
        goto out;

    sb_str(&b, r->method);
    sb_chr(&b, '\n');
    if (r->path[0] != '/')
        sb_chr(&b, '/');
    sb_uri_encode(&b, r->path, strlen(r->path), true);
    sb_chr(&b, '\n');
    sb_query(&b, q, r->nquery);
    sb_chr(&b, '\n');
    for (size_t i = 0; i < r->nheaders; i++) {
        sb_str(&b, h[i].name);
        sb_chr(&b, ':');
        sb_str(&b, h[i].value);
        sb_chr(&b, '\n');
    }
    sb_chr(&b, '\n');
    sb_signed_headers(&sh, h, r->nheaders);
    if (sh.buf)
        sb_str(&b, sh.buf);
    sb_chr(&b, '\n');
    sb_str(&b, r->payload_hash);

    out = sb_take(&b);
    if (signed_headers) {
        *signed_headers = sb_take(&sh);
        if (!*signed_headers) {
            free(out);
            out = NULL;
        }
    }
out:
    free(b.buf);
    free(sh.buf);
    items_free(q, r->nquery);
    items_free(h, r->nheaders);
    return out;
}

char *sigv4_canonical_request(const struct sigv4_request *r)
{
    return canonical(r, NULL);
}

/* "20130524/us-east-1/s3/aws4_request" into sb. */
static void sb_scope(struct sb *b, const struct sigv4_creds *c, time_t now)
{
    char date[17];
    sigv4_amz_date(now, date);
    sb_add(b, date, 8);
    sb_chr(b, '/');
    sb_str(b, c->region);
    sb_chr(b, '/');
    sb_str(b, c->service);
    sb_str(b, "/aws4_request");
}

char *sigv4_string_to_sign(const struct sigv4_creds *c, time_t now,
                           const char *canonical_request)
{
    struct sb b = { 0 };
    char date[17], hash[65];

    sigv4_amz_date(now, date);
    util_sha256_hex(canonical_request, strlen(canonical_request), hash);
    sb_str(&b, SIGV4_ALGORITHM "\n");
    sb_str(&b, date);
    sb_chr(&b, '\n');
    sb_scope(&b, c, now);
    sb_chr(&b, '\n');
    sb_str(&b, hash);
    return sb_take(&b);
}

void sigv4_signing_key(const char *secret, const char *date8,
                       const char *region, const char *service,
                       uint8_t out[32])
{
    uint8_t k[32];
    size_t slen = strlen(secret);
    char *kse = malloc(slen + 5);

    /* "AWS4" + secret is the only input of unbounded size; fall back to an
     * all-zero key on allocation failure, which simply fails to verify. */
    if (!kse) {
        memset(out, 0, 32);
        return;
    }
    memcpy(kse, "AWS4", 4);
    memcpy(kse + 4, secret, slen + 1);
    sigv4_hmac_sha256(kse, slen + 4, date8, strlen(date8), k);
    OPENSSL_cleanse(kse, slen + 4);
    free(kse);
    sigv4_hmac_sha256(k, 32, region, strlen(region), k);
    sigv4_hmac_sha256(k, 32, service, strlen(service), k);
    sigv4_hmac_sha256(k, 32, "aws4_request", 12, out);
    OPENSSL_cleanse(k, sizeof k);
}

/* hex signature of string_to_sign into sig. */
static void sign(const struct sigv4_creds *c, time_t now, const char *sts,
                 char sig[65])
{
    char date[17];
    uint8_t key[32], mac[32];

    sigv4_amz_date(now, date);
    date[8] = '\0';
    sigv4_signing_key(c->secret_key, date, c->region, c->service, key);
    sigv4_hmac_sha256(key, sizeof key, sts, strlen(sts), mac);
    OPENSSL_cleanse(key, sizeof key);
    util_hex(mac, sizeof mac, sig);
}

static bool creds_ok(const struct sigv4_creds *c)
{
    return c && c->access_key && c->secret_key && c->region && c->service;
}

char *sigv4_authorization(const struct sigv4_creds *c,
                          const struct sigv4_request *r, time_t now,
                          char signature[65])
{
    char *cr = NULL, *sh = NULL, *sts = NULL, *out = NULL;
    char sig[65];
    struct sb b = { 0 };

    if (!creds_ok(c) || !r)
        goto out;
    cr = canonical(r, &sh);
    if (!cr)
        goto out;
    sts = sigv4_string_to_sign(c, now, cr);
    if (!sts)
        goto out;
    sign(c, now, sts, sig);

    sb_str(&b, SIGV4_ALGORITHM " Credential=");
    sb_str(&b, c->access_key);
    sb_chr(&b, '/');
    sb_scope(&b, c, now);
    sb_str(&b, ",SignedHeaders=");
    sb_str(&b, sh);
    sb_str(&b, ",Signature=");
    sb_str(&b, sig);
    out = sb_take(&b);
    if (out && signature)
        memcpy(signature, sig, 65);
out:
    free(b.buf);
    free(cr);
    free(sh);
    free(sts);
    return out;
}

char *sigv4_presign_url(const struct sigv4_creds *c, const char *method,
                        const char *origin, const char *host,
                        const char *path, const struct sigv4_pair *extra,
                        size_t nextra, time_t now, unsigned expires)
{
    struct sigv4_pair *q = NULL;
    struct item *items = NULL;
    char *cr = NULL, *sts = NULL, *out = NULL;
    struct sb cred = { 0 }, url = { 0 };
    char date[17], exp[16], sig[65];
    size_t n = nextra + 5;

    if (!creds_ok(c) || !method || !origin || !host || !path ||
        expires < 1 || expires > 604800)
        goto out;
    q = calloc(n, sizeof *q);
    if (!q)
        goto out;
    sigv4_amz_date(now, date);
    snprintf(exp, sizeof exp, "%u", expires);
    sb_str(&cred, c->access_key);
    sb_chr(&cred, '/');
    sb_scope(&cred, c, now);
    if (cred.oom)
        goto out;
    for (size_t i = 0; i < nextra; i++)
        q[i] = extra[i];
    q[nextra + 0] = (struct sigv4_pair){ "X-Amz-Algorithm", SIGV4_ALGORITHM };
    q[nextra + 1] = (struct sigv4_pair){ "X-Amz-Credential", cred.buf };
    q[nextra + 2] = (struct sigv4_pair){ "X-Amz-Date", date };
    q[nextra + 3] = (struct sigv4_pair){ "X-Amz-Expires", exp };
    q[nextra + 4] = (struct sigv4_pair){ "X-Amz-SignedHeaders", "host" };

    struct sigv4_pair hdr = { "host", host };
    struct sigv4_request r = {
        .method = method, .path = path, .query = q, .nquery = n,
        .headers = &hdr, .nheaders = 1,
        .payload_hash = SIGV4_UNSIGNED_PAYLOAD,
    };
    cr = canonical(&r, NULL);
    if (!cr)
        goto out;
    sts = sigv4_string_to_sign(c, now, cr);
    if (!sts)
        goto out;
    sign(c, now, sts, sig);

    /* The URL carries the same encoded, sorted query that was signed, so
     * the server's canonical form is byte for byte ours. */
    items = query_items(q, n);
    if (!items)
        goto out;
    sb_str(&url, origin);
    if (path[0] != '/')
        sb_chr(&url, '/');
    sb_uri_encode(&url, path, strlen(path), true);
    sb_chr(&url, '?');
    sb_query(&url, items, n);
    sb_str(&url, "&X-Amz-Signature=");
    sb_str(&url, sig);
    out = sb_take(&url);
out:
    free(url.buf);
    free(cred.buf);
    items_free(items, n);
    free(q);
    free(cr);
    free(sts);
    return out;
}
