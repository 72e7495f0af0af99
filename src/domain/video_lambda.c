/* video_lambda: the upload Lambda's POST /api/v1/video/, signed over a
 * Python-style dump of its attributes, recording a video the Lambda put
 * in storage. */
#include "config.h"

#include "studyhub/domain/videos.h"
#include "studyhub/domain/videos_internal.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/queue/task.h"
#include "studyhub/core/util.h"
#include "studyhub/http/apidoc.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/sigv4.h"
#include "studyhub/io/storage.h"

/* ============================ the upload Lambda ================================== */

/* Python's json.dumps(v, separators=(",", ":")) with its defaults
 * (ensure_ascii, float repr): the bytes the Lambda signs. */
static void py_float(double x, struct evbuffer *out)
{
    char buf[48], digits[24];
    int prec, exp, nd = 0;

    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    const char *p = buf;
    if (*p == '-') {
        evbuffer_add(out, "-", 1);
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p) && nd < (int)sizeof digits - 1)
            digits[nd++] = *p;
    digits[nd] = '\0';
    exp = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    if (exp >= -4 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++)
                evbuffer_add(out, i < nd ? &digits[i] : "0", 1);
            evbuffer_add(out, ".", 1);
            if (nd > exp + 1)
                evbuffer_add(out, digits + exp + 1, (size_t)(nd - exp - 1));
            else
                evbuffer_add(out, "0", 1);
        } else {
            evbuffer_add(out, "0.", 2);
            for (int i = 0; i < -exp - 1; i++)
                evbuffer_add(out, "0", 1);
            evbuffer_add(out, digits, (size_t)nd);
        }
    } else {
        evbuffer_add(out, digits, 1);
        if (nd > 1) {
            evbuffer_add(out, ".", 1);
            evbuffer_add(out, digits + 1, (size_t)(nd - 1));
        }
        evbuffer_add_printf(out, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void py_string(const char *s, size_t n, struct evbuffer *out)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;

    evbuffer_add(out, "\"", 1);
    while (p < end) {
        unsigned c = *p;
        unsigned long cp;
        int extra;
        switch (c) {
        case '"': evbuffer_add(out, "\\\"", 2); p++; continue;
        case '\\': evbuffer_add(out, "\\\\", 2); p++; continue;
        case '\n': evbuffer_add(out, "\\n", 2); p++; continue;
        case '\r': evbuffer_add(out, "\\r", 2); p++; continue;
        case '\t': evbuffer_add(out, "\\t", 2); p++; continue;
        case '\b': evbuffer_add(out, "\\b", 2); p++; continue;
        case '\f': evbuffer_add(out, "\\f", 2); p++; continue;
        }
        if (c >= 0x20 && c < 0x7f) {
            evbuffer_add(out, p, 1);
            p++;
            continue;
        }
        /* jansson gave valid UTF-8: decode one code point. */
        if (c < 0x80) {
            cp = c;
            extra = 0;
        } else if (c < 0xe0) {
            cp = c & 0x1f;
            extra = 1;
        } else if (c < 0xf0) {
            cp = c & 0x0f;
            extra = 2;
        } else {
            cp = c & 0x07;
            extra = 3;
        }
        p++;
        for (int i = 0; i < extra && p < end; i++, p++)
            cp = (cp << 6) | (*p & 0x3f);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            evbuffer_add_printf(out, "\\u%04lx\\u%04lx", 0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
        } else {
            evbuffer_add_printf(out, "\\u%04lx", cp);
        }
    }
    evbuffer_add(out, "\"", 1);
}

void video_py_dump(const json_t *v, struct evbuffer *out)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        evbuffer_add(out, "{", 1);
        json_object_foreach((json_t *)v, k, x) {
            if (!first)
                evbuffer_add(out, ",", 1);
            first = false;
            py_string(k, strlen(k), out);
            evbuffer_add(out, ":", 1);
            video_py_dump(x, out);
        }
        evbuffer_add(out, "}", 1);
        break;
    }
    case JSON_ARRAY:
        evbuffer_add(out, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                evbuffer_add(out, ",", 1);
            video_py_dump(json_array_get(v, i), out);
        }
        evbuffer_add(out, "]", 1);
        break;
    case JSON_STRING:
        py_string(json_string_value(v), json_string_length(v), out);
        break;
    case JSON_INTEGER:
        evbuffer_add_printf(out, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        py_float(json_real_value(v), out);
        break;
    case JSON_TRUE: evbuffer_add(out, "true", 4); break;
    case JSON_FALSE: evbuffer_add(out, "false", 5); break;
    case JSON_NULL: evbuffer_add(out, "null", 4); break;
    }
}

/* inflection.underscore, which upstream's parser applies to the top-level
 * attribute names: "fullName" -> "full_name", "HTTPCode" -> "http_code". */
char *video_underscore(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(2 * n + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i > 0 && isupper(c)) {
            unsigned char prev = (unsigned char)s[i - 1], next = (unsigned char)s[i + 1];
            bool r1 = isupper(prev) && next && islower(next);
            bool r2 = islower(prev) || isdigit(prev);
            if (r1 || r2)
                *o++ = '_';
        }
        *o++ = c == '-' ? '_' : (char)tolower(c);
    }
    *o = '\0';
    return out;
}

/* What the Lambda signs: DJA's parsed data (id, the attributes with their
 * names underscored, relationships other than study and response, and
 * _meta) without type, study and response.  Also the underscored
 * attributes, for reading the fields.  NULL when out of memory. */
static json_t *lambda_signed_dict(json_t *doc, json_t *data, json_t **attrs_out)
{
    json_t *out = json_object(), *attrs = json_object();
    json_t *a = json_object_get(data, "attributes"), *rels = json_object_get(data, "relationships");
    const char *k;
    json_t *v;

    if (!out || !attrs)
        goto fail;
    if (json_object_get(data, "id"))
        json_object_set(out, "id", json_object_get(data, "id"));
    json_object_foreach(a, k, v) {
        char *u = video_underscore(k);
        if (!u)
            goto fail;
        json_object_set(out, u, v);
        json_object_set(attrs, u, v);
        free(u);
    }
    json_object_foreach(rels, k, v) {
        if (strcmp(k, "study") == 0 || strcmp(k, "response") == 0)
            continue;
        json_t *d = json_object_get(v, "data");
        json_object_set(out, k, d ? d : json_null());
    }
    if (json_object_get(doc, "meta"))
        json_object_set(out, "_meta", json_object_get(doc, "meta"));
    json_object_del(out, "type");
    *attrs_out = attrs;
    return out;
fail:
    json_decref(out);
    json_decref(attrs);
    return NULL;
}

bool video_lambda_sig_ok(const char *key, json_t *dict, const char *sig)
{
    struct evbuffer *msg = evbuffer_new();
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1], given[2 * EVP_MAX_MD_SIZE + 1];
    bool ok = false;

    if (!msg)
        return false;
    video_py_dump(dict, msg);
    size_t n = evbuffer_get_length(msg);
    const unsigned char *p = evbuffer_pullup(msg, -1);
    if ((p || n == 0) &&
        HMAC(EVP_sha256(), key, (int)strlen(key), p, n, mac, &maclen) != NULL &&
        strlen(sig) == 2 * (size_t)maclen) {
        util_hex(mac, maclen, hex);
        for (size_t i = 0; i <= strlen(sig); i++)
            given[i] = (char)tolower((unsigned char)sig[i]);
        ok = CRYPTO_memcmp(hex, given, 2 * (size_t)maclen) == 0;
    }
    evbuffer_free(msg);
    return ok;
}

/* Characters (code points) of a valid UTF-8 string, as Django counts. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

#define LAMBDA_STR_MAX (VIDEO_NAME_MAX * 4 + 1)

/* One POST /api/v1/video/ waiting for its statement. */
struct lambda_ctx {
    struct http_req *req;           /* borrowed */
    struct app *app;                /* borrowed */
    char study[37], response[37];   /* lower-case uuids */
    char frame[LAMBDA_STR_MAX];
    char full[LAMBDA_STR_MAX];
    char pipe_name[LAMBDA_STR_MAX];
    char pipe_id[24];
    char ts[LAMBDA_STR_MAX];
    bool has_pipe_name, has_pipe_id, has_ts, consent;
    int tries;                      /* statement runs */
};

static void lambda_run(struct lambda_ctx *c);

static void lambda_recorded(PGresult *res, void *arg)
{
    struct lambda_ctx *c = arg;
    struct http_req *req = c->req;

    if (apidoc_db_failed(req, res, "video_record")) {
        free(c);
        return;
    }
    if (PQntuples(res) == 0 && c->tries < 3) {
        lambda_run(c);
        return;
    }
    const char *v = PQntuples(res) ? PQgetvalue(res, 0, VR_VERDICT) : "";
    if (strcmp(v, "created") == 0) {
        char self[200];
        jsonapi_url(req, self, sizeof self, "videos/%s/", PQgetvalue(res, 0, VR_UUID));
        http_add_header(req, "Location", self);
        reply_video(req, NULL, res, VR_UUID, 201);
    } else if (strcmp(v, "exists") == 0) {
        /* The Lambda retried: the video is recorded once. */
        reply_video(req, NULL, res, VR_UUID, 200);
    } else if (strcmp(v, "conflict") == 0) {
        jsonapi_reply_errorf(req, 400, "unique", "/data/attributes/full_name",
                             "video with this full name already exists.");
    } else if (strcmp(v, "no_study") == 0) {
        jsonapi_reply_errorf(req, 400, "does_not_exist", "/data/relationships/study",
                             "Invalid pk \"%s\" - object does not exist.", c->study);
    } else if (strcmp(v, "no_response") == 0) {
        jsonapi_reply_errorf(req, 400, "does_not_exist", "/data/relationships/response",
                             "Invalid pk \"%s\" - object does not exist in this study.",
                             c->response);
    } else {
        jsonapi_reply_unavailable(req, "Database");
    }
    free(c);
}

static void lambda_run(struct lambda_ctx *c)
{
    const char *params[] = {
        c->study, c->response, c->frame, c->full,
        c->has_pipe_name ? c->pipe_name : NULL, c->has_pipe_id ? c->pipe_id : NULL,
        NULL, c->has_ts ? c->ts : NULL, c->consent ? "true" : "false",
    };
    c->tries++;
    if (pg_exec(c->app->pg, &video_record_stmt, 9, params, lambda_recorded, c) < 0) {
        jsonapi_reply_unavailable(c->req, "Database");
        free(c);
    }
}

/* A string attribute copied into out (LAMBDA_STR_MAX bytes): 1, 0 when
 * absent or null (an error when required), -1 after adding an error. */
static int lambda_str(json_t *attrs, const char *name, bool required, char *out,
                      struct jsonapi_error *errs, int *nerr)
{
    json_t *v = json_object_get(attrs, name);
    char ptr[80];

    snprintf(ptr, sizeof ptr, "/data/attributes/%s", name);
    out[0] = '\0';
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        jsonapi_error_set(&errs[(*nerr)++], 400, "required", ptr, "This field is required.");
        return -1;
    }
    if (!json_is_string(v)) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "invalid", ptr, "Not a valid string.");
        return -1;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "invalid", ptr,
                          "Null characters are not allowed.");
        return -1;
    }
    if (!*s && required) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "blank", ptr, "This field may not be blank.");
        return -1;
    }
    if (utf8_chars(s) > VIDEO_NAME_MAX) {
        jsonapi_error_set(&errs[(*nerr)++], 400, "max_length", ptr,
                          "Ensure this field has no more than %d characters.", VIDEO_NAME_MAX);
        return -1;
    }
    snprintf(out, LAMBDA_STR_MAX, "%s", s);
    return 1;
}

/* A relationship that must be there: 1 with the lower-case uuid, or -1
 * after answering. */
static int lambda_rel(struct http_req *req, json_t *data, const char *name, const char *type,
                      char out[37])
{
    struct jsonapi_error e;
    const char *id;
    char ptr[64];

    snprintf(ptr, sizeof ptr, "/data/relationships/%s", name);
    switch (jsonapi_rel_id(data, name, type, &id, &e)) {
    case 1:
        if (apidoc_uuid_copy(id, out))
            return 1;
        jsonapi_reply_errorf(req, 400, "does_not_exist", ptr,
                             "Invalid pk \"%.40s\" - object does not exist.", id);
        return -1;
    case 0:
        jsonapi_reply_errorf(req, 400, "parse_error", ptr,
                             "Received document does not contain a %s relationship.", name);
        return -1;
    default:
        jsonapi_reply_error(req, &e);
        return -1;
    }
}

static void lambda_post(struct http_req *req, struct app *app)
{
    struct jsonapi_error e, errs[8];
    int nerr = 0;
    json_t *data = NULL, *doc = NULL, *dict = NULL, *attrs = NULL;
    struct lambda_ctx *c = NULL;
    const char *key = app->cfg->aws_lambda_secret_access_key;

    /* Upstream's order: the parser (415, 400, 409), the signature (401),
     * then the fields (400). */
    if (jsonapi_parse_request(req, "videos", NULL, &data, &e) < 0) {
        jsonapi_reply_error(req, &e);
        goto out;
    }
    const char *sig = http_req_header(req, "X-AWS-Lambda-HMAC-Sig");
    if (!sig)
        sig = http_req_header(req, "X_AWS_LAMBDA_HMAC_SIG");
    if (!sig) {
        jsonapi_reply_errorf(req, 401, "not_authenticated", "/data",
                             "No HMAC signature found in request header.");
        goto out;
    }
    size_t blen = 0;
    const char *body = http_req_body(req, &blen);
    doc = json_loadb(body, blen, 0, NULL);
    if (!doc || !(dict = lambda_signed_dict(doc, data, &attrs))) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    if (!key || !*key) {
        log_warn("videos: POST /api/v1/video/ arrived but AWS_LAMBDA_SECRET_ACCESS_KEY is not set");
        jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                             "HMAC signatures do not match.");
        goto out;
    }
    if (!video_lambda_sig_ok(key, dict, sig)) {
        jsonapi_reply_errorf(req, 401, "authentication_failed", "/data",
                             "HMAC signatures do not match.");
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        jsonapi_reply_unavailable(req, "Memory");
        goto out;
    }
    c->req = req;
    c->app = app;
    if (lambda_rel(req, data, "study", "studies", c->study) < 0 ||
        lambda_rel(req, data, "response", "responses", c->response) < 0)
        goto out;
    lambda_str(attrs, "frame_id", true, c->frame, errs, &nerr);
    if (lambda_str(attrs, "full_name", true, c->full, errs, &nerr) > 0 &&
        !storage_key_valid(c->full))
        jsonapi_error_set(&errs[nerr++], 400, "invalid", "/data/attributes/full_name",
                          "Not a name a video can be stored under.");
    c->has_pipe_name = lambda_str(attrs, "pipe_name", false, c->pipe_name, errs, &nerr) > 0;
    c->has_ts = lambda_str(attrs, "s3_timestamp", false, c->ts, errs, &nerr) > 0;
    json_t *pid = json_object_get(attrs, "pipe_numeric_id");
    if (json_is_integer(pid)) {
        snprintf(c->pipe_id, sizeof c->pipe_id, "%lld", (long long)json_integer_value(pid));
        c->has_pipe_id = true;
    } else if (json_is_string(pid) && json_string_length(pid) > 0 &&
               json_string_length(pid) < 19 &&
               strspn(json_string_value(pid), "0123456789") == json_string_length(pid)) {
        snprintf(c->pipe_id, sizeof c->pipe_id, "%s", json_string_value(pid));
        c->has_pipe_id = true;
    } else if (pid && !json_is_null(pid)) {
        jsonapi_error_set(&errs[nerr++], 400, "invalid", "/data/attributes/pipe_numeric_id",
                          "A valid integer is required.");
    }
    /* DRF's BooleanField: true/false, 1/0, and their strings. */
    json_t *cf = json_object_get(attrs, "is_consent_footage");
    const char *cs = json_is_string(cf) ? json_string_value(cf) : NULL;
    if (json_is_boolean(cf))
        c->consent = json_is_true(cf);
    else if (json_is_integer(cf) && (json_integer_value(cf) == 0 || json_integer_value(cf) == 1))
        c->consent = json_integer_value(cf) == 1;
    else if (cs && (strcasecmp(cs, "true") == 0 || strcmp(cs, "1") == 0))
        c->consent = true;
    else if (cs && (strcasecmp(cs, "false") == 0 || strcmp(cs, "0") == 0))
        c->consent = false;
    else if (cf && !json_is_null(cf))
        jsonapi_error_set(&errs[nerr++], 400, "invalid", "/data/attributes/is_consent_footage",
                          "Must be a valid boolean.");
    if (nerr) {
        apidoc_reply_errors(req, errs, nerr);
        goto out;
    }
    lambda_run(c);
    c = NULL;
out:
    free(c);
    json_decref(attrs);
    json_decref(dict);
    json_decref(doc);
    json_decref(data);
}

static const struct route video_lambda_routes_table[] = {
    { HTTP_POST, "/api/v1/video/", lambda_post, ROUTE_SIGNED },
};

int video_lambda_routes(struct router *r)
{
    return ROUTER_ADD_TABLE(r, video_lambda_routes_table);
}
