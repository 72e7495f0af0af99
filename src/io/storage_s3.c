/* storage_s3: the s3:// and gs:// backend of io/storage.  Every request is
 * signed with SigV4 (io/sigv4) and sent through io/fetch, which retries
 * idempotent ones. */
#include "config.h"

#include "studyhub/io/storage_backend.h"
#include "studyhub/io/s3xml.h"

#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/fetch.h"
#include "studyhub/io/sigv4.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ============================ XML bodies we send ================================ */

struct xbuf {
    char *data;  /* owned */
    size_t len;
    size_t cap;
    bool oom;
};

static void xbuf_add(struct xbuf *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *d = realloc(b->data, nc);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = nc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void xbuf_raw(struct xbuf *b, const char *s)
{
    xbuf_add(b, s, strlen(s));
}

/* Text content, escaped (an ETag's quotes included). */
static void xbuf_text(struct xbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': xbuf_raw(b, "&amp;"); break;
        case '<': xbuf_raw(b, "&lt;"); break;
        case '>': xbuf_raw(b, "&gt;"); break;
        case '"': xbuf_raw(b, "&quot;"); break;
        default: xbuf_add(b, s, 1);
        }
    }
}


/* The body of CompleteMultipartUpload for op's parts, into op->xml. */
static int complete_xml(struct storage_op *op)
{
    struct xbuf x = { 0 };

    xbuf_raw(&x, "<CompleteMultipartUpload>");
    for (size_t i = 0; i < op->nparts; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", op->parts[i].number);
        xbuf_raw(&x, "<Part><PartNumber>");
        xbuf_raw(&x, num);
        xbuf_raw(&x, "</PartNumber><ETag>");
        xbuf_text(&x, op->parts[i].etag);
        xbuf_raw(&x, "</ETag></Part>");
    }
    xbuf_raw(&x, "</CompleteMultipartUpload>");
    if (x.oom) {
        free(x.data);
        return -ENOMEM;
    }
    free(op->xml);
    op->xml = x.data;
    op->xml_len = x.len;
    return 0;
}

/* ============================ S3 backend ==================================== */

/* One S3 request to build, sign and send. */
struct s3_call {
    const char *method;
    const char *key;                 /* NULL: the bucket itself */
    const struct sigv4_pair *query;
    size_t nquery;
    const struct sigv4_pair *hdrs;   /* extra headers, signed and sent */
    size_t nhdrs;
    const void *body;                /* memory body (borrowed) */
    size_t body_len;
    bool stream_body;                /* op's read path (put_stream/put_file) */
    int64_t stream_len;
    bool stream_response;            /* op's write_fn */
    size_t max_body;
    int max_attempts;                /* 0: fetch's default */
    bool long_transfer;              /* no total timeout; low-speed only */
};

static void s3_on_done(struct fetch_req *req, const struct fetch_result *res,
                       void *arg);

static ssize_t s3_read(char *buf, size_t len, void *arg)
{
    struct storage_op *op = arg;

    if (op->kind == OP_PUT_FILE) {
        for (;;) {
            ssize_t n = read(op->in_fd, buf, len);
            if (n < 0 && errno == EINTR)
                continue;
            return n < 0 ? FETCH_ABORT : n;
        }
    }
    ssize_t got;
    if (!storage_op_user_read(op, buf, len, &got))
        return FETCH_ABORT;
    if (got == STORAGE_PAUSE)
        return FETCH_PAUSE;
    if (got < 0) {
        op->stopped = true;
        return FETCH_ABORT;
    }
    op->moved += got;
    return got;
}

static int s3_rewind(void *arg)
{
    struct storage_op *op = arg;
    return (op->kind == OP_PUT_FILE && lseek(op->in_fd, 0, SEEK_SET) == 0) ? 0 : -1;
}

static int s3_write(const char *data, size_t len, void *arg)
{
    struct storage_op *op = arg;
    int rc;

    if (!storage_op_user_write(op, data, len, &rc))
        return FETCH_ABORT;
    if (rc == STORAGE_PAUSE)
        return FETCH_PAUSE;
    if (rc != 0) {
        op->stopped = true;
        return FETCH_ABORT;
    }
    op->moved += (int64_t)len;
    return 0;
}

/* Signs and submits; on failure answers the op (and returns -1). */
static int s3_send(struct storage_op *op, const struct s3_call *c)
{
    struct storage *st = op->st;
    time_t now = time(NULL);
    char date[17], hash[65];
    const char *payload;
    char *path = NULL, *epath = NULL, *query = NULL, *url = NULL, *auth = NULL;
    struct sigv4_pair *sh = NULL;
    char **lines = NULL;
    size_t nsh = 3 + c->nhdrs, nl = 0;
    int rc = -1;

    if (!st->fc) {
        storage_op_fail(op, -EIO, "no HTTP client");
        return -1;
    }
    sigv4_amz_date(now, date);
    if (c->stream_body || c->body_len > HASH_BODY_MAX) {
        payload = SIGV4_UNSIGNED_PAYLOAD;
    } else {
        util_sha256_hex(c->body ? c->body : "", c->body_len, hash);
        payload = hash;
    }
    if (c->key)
        path = util_asprintf("%s/%s", st->path_prefix, c->key);
    else
        path = xstrdup(*st->path_prefix ? st->path_prefix : "/");
    sh = calloc(nsh, sizeof *sh);
    lines = calloc(nsh + 3, sizeof *lines);
    if (!path || !sh || !lines)
        goto oom;
    sh[0] = (struct sigv4_pair){ "host", st->host };
    sh[1] = (struct sigv4_pair){ "x-amz-date", date };
    sh[2] = (struct sigv4_pair){ "x-amz-content-sha256", payload };
    for (size_t i = 0; i < c->nhdrs; i++)
        sh[3 + i] = c->hdrs[i];
    struct sigv4_creds cr = { st->access_key, st->secret_key, st->region, "s3" };
    struct sigv4_request sr = {
        .method = c->method, .path = path, .query = c->query,
        .nquery = c->nquery, .headers = sh, .nheaders = nsh,
        .payload_hash = payload,
    };
    auth = sigv4_authorization(&cr, &sr, now, NULL);
    epath = sigv4_uri_encode(path, strlen(path), true);
    query = c->nquery ? sigv4_canonical_query(c->query, c->nquery) : xstrdup("");
    if (!auth || !epath || !query)
        goto oom;
    url = util_asprintf("%s%s%s%s", st->origin, epath, *query ? "?" : "", query);
    if (!url)
        goto oom;
    for (size_t i = 0; i < nsh; i++)
        if (!(lines[nl++] = util_asprintf("%s: %s", sh[i].name, sh[i].value ? sh[i].value : "")))
            goto oom;
    if (!(lines[nl++] = util_asprintf("Authorization: %s", auth)))
        goto oom;

    struct fetch_opts fo = {
        .method = c->method, .url = url, .headers = (const char *const *)lines,
        .body = c->body, .body_len = c->body_len,
        .max_body = c->max_body ? c->max_body : XML_MAX,
        .max_attempts = c->max_attempts,
        .timeout_ms = c->long_transfer ? -1 : 0,
        .done = s3_on_done, .arg = op,
    };
    if (c->stream_body) {
        fo.body = NULL;
        fo.read_fn = s3_read;
        fo.rewind_fn = s3_rewind;
        fo.read_arg = op;
        fo.upload_len = c->stream_len;
    }
    if (c->stream_response) {
        fo.write_fn = s3_write;
        fo.write_arg = op;
    }
    op->req = fetch_submit(st->fc, &fo);
    if (!op->req)
        goto oom;
    rc = 0;
    goto out;
oom:
    storage_op_fail(op, -ENOMEM, "out of memory");
out:
    for (size_t i = 0; i < nl; i++)
        free(lines[i]);
    free(lines);
    free(sh);
    free(path);
    free(epath);
    free(query);
    free(url);
    free(auth);
    return rc;
}

/* Whether a reply's root element is <Error>. */
static bool reply_is_error(const struct fetch_result *res)
{
    struct s3xml_doc d;
    bool is_error = false;

    if (res->body && s3xml_parse(res->body, res->body_len, NULL, &d, NULL) == 0) {
        is_error = strcmp(d.root, "Error") == 0;
        s3xml_doc_free(&d);
    }
    return is_error;
}

/* Maps a failed reply to err and message; returns true when it failed. */
static bool s3_failed(struct storage_op *op, const struct fetch_result *res)
{
    int status = res->status;
    int err;

    op->res.http_status = status;
    if (res->body_too_large) {
        storage_op_fail(op, -EFBIG, "%s is larger than %zu bytes", op->key ? op->key : "reply",
                op->max);
        return true;
    }
    if (res->error) {
        storage_op_fail(op, op->stopped ? -ECANCELED : -EIO, "%s %s: %s", storage_op_names[op->kind],
                op->key ? op->key : op->st->bucket,
                op->stopped ? "stopped by the caller's stream function" : res->error);
        return true;
    }
    /* A 200 can carry an error (copy, complete): S3 sends the status before
     * it knows the outcome. */
    bool error_body = status == 200 && (op->kind == OP_COPY || op->kind == OP_MPU_COMPLETE) &&
                      reply_is_error(res);
    if (status >= 200 && status < 300 && !error_body)
        return false;
    if (status == 404 && op->kind == OP_DELETE)
        return false;  /* already gone is fine */
    switch (status) {
    case 404: err = -ENOENT; break;
    case 401:
    case 403: err = -EACCES; break;
    case 400:
    case 409:
    case 411:
    case 412:
    case 416: err = -EINVAL; break;
    default: err = -EIO;
    }
    struct s3xml_doc d;
    bool parsed = s3xml_parse(res->body, res->body_len, NULL, &d, NULL) == 0;
    const char *code = parsed ? s3xml_get(&d.top, "Code") : NULL;
    const char *msg = parsed ? s3xml_get(&d.top, "Message") : NULL;
    if (code && (!strcmp(code, "NoSuchKey") || !strcmp(code, "NoSuchUpload")))
        err = -ENOENT;
    storage_op_fail(op, err, "%s %s: HTTP %d%s%s%s%s", storage_op_names[op->kind],
            op->key ? op->key : op->st->bucket, status, code ? " " : "",
            code ? code : (status == 404 ? " not found" : ""), msg ? ": " : "",
            msg ? msg : "");
    if (parsed)
        s3xml_doc_free(&d);
    return true;
}

static void s3_headers_to_result(struct storage_op *op, const struct fetch_result *res)
{
    char v[512];

    if (fetch_header(res, "ETag", v, sizeof v))
        op->r_etag = strdup(v);
    if (fetch_header(res, "Content-Type", v, sizeof v))
        op->r_ctype = strdup(v);
    if (fetch_header(res, "Content-Length", v, sizeof v))
        op->res.size = strtoll(v, NULL, 10);
    if (fetch_header(res, "Last-Modified", v, sizeof v)) {
        time_t t = curl_getdate(v, NULL);
        op->res.mtime = t > 0 ? t : 0;
    }
}

/* One text field of a reply's root (ETag, UploadId), or NULL. */
static char *reply_field(const struct fetch_result *res, const char *name)
{
    struct s3xml_doc d;
    char *v = NULL;

    if (s3xml_parse(res->body, res->body_len, NULL, &d, NULL) == 0) {
        v = s3xml_dup(&d.top, name);
        s3xml_doc_free(&d);
    }
    return v;
}

static int s3_parse_list(struct storage_op *op, const struct fetch_result *res)
{
    struct s3xml_doc d;
    const char *why;
    int rc = s3xml_parse(res->body, res->body_len, "Contents", &d, &why);

    if (rc < 0)
        return rc;
    if (d.nitems && !(op->r_objs = calloc(d.nitems, sizeof *op->r_objs)))
        rc = -ENOMEM;
    for (size_t i = 0; !rc && i < d.nitems; i++) {
        struct storage_object *o = &op->r_objs[op->r_nobjs++];
        const char *size = s3xml_get(&d.items[i], "Size");

        o->key = s3xml_dup(&d.items[i], "Key");
        o->etag = s3xml_dup(&d.items[i], "ETag");
        o->size = size ? strtoll(size, NULL, 10) : 0;
        o->mtime = parse_iso8601(s3xml_get(&d.items[i], "LastModified"));
        if (!o->key)
            rc = -EIO;
        else if (!o->etag && !(o->etag = strdup("")))
            rc = -ENOMEM;
    }
    const char *trunc = s3xml_get(&d.top, "IsTruncated");
    if (!rc && trunc && !strcmp(trunc, "true") &&
        !(op->r_next = s3xml_dup(&d.top, "NextContinuationToken")))
        rc = -EIO;
    s3xml_doc_free(&d);
    return rc;
}

static int s3_parse_uploads(struct storage_op *op, const struct fetch_result *res)
{
    struct s3xml_doc d;
    const char *why;
    int rc = s3xml_parse(res->body, res->body_len, "Upload", &d, &why);

    if (rc < 0)
        return rc;
    if (d.nitems && !(op->r_ups = calloc(d.nitems, sizeof *op->r_ups)))
        rc = -ENOMEM;
    for (size_t i = 0; !rc && i < d.nitems; i++) {
        struct storage_upload_info *u = &op->r_ups[op->r_nups++];

        u->key = s3xml_dup(&d.items[i], "Key");
        u->upload_id = s3xml_dup(&d.items[i], "UploadId");
        u->initiated = parse_iso8601(s3xml_get(&d.items[i], "Initiated"));
        if (!u->key || !u->upload_id)
            rc = -EIO;
    }
    const char *trunc = s3xml_get(&d.top, "IsTruncated");
    if (!rc && trunc && !strcmp(trunc, "true")) {
        const char *k = s3xml_get(&d.top, "NextKeyMarker");
        const char *id = s3xml_get(&d.top, "NextUploadIdMarker");
        if (k && !(op->r_next = util_asprintf("%s\n%s", k, id ? id : "")))
            rc = -ENOMEM;
    }
    s3xml_doc_free(&d);
    return rc;
}

static void s3_on_done(struct fetch_req *req, const struct fetch_result *res,
                       void *arg)
{
    struct storage_op *op = arg;
    int rc = 0;

    op->req = NULL;
    if (s3_failed(op, res))
        return;
    switch (op->kind) {
    case OP_PUT:
    case OP_PUT_STREAM:
    case OP_PUT_FILE:
    case OP_MPU_PART:
        s3_headers_to_result(op, res);
        op->res.size = op->kind == OP_PUT_STREAM ? op->moved
                     : op->kind == OP_PUT_FILE ? op->stream_len : (int64_t)op->len;
        if (op->kind == OP_MPU_PART && !op->r_etag)
            rc = -EIO;
        break;
    case OP_GET:
        s3_headers_to_result(op, res);
        op->r_body = malloc(res->body_len + 1);
        if (!op->r_body) {
            rc = -ENOMEM;
            break;
        }
        memcpy(op->r_body, res->body, res->body_len + 1);
        op->res.body = op->r_body;
        op->res.body_len = res->body_len;
        op->res.size = (int64_t)res->body_len;
        break;
    case OP_GET_STREAM:
        s3_headers_to_result(op, res);
        op->res.size = op->moved;
        break;
    case OP_HEAD:
        s3_headers_to_result(op, res);
        break;
    case OP_COPY:
    case OP_MPU_COMPLETE:
        op->r_etag = reply_field(res, "ETag");
        break;
    case OP_DELETE:
    case OP_MPU_ABORT:
        break;
    case OP_LIST:
        rc = s3_parse_list(op, res);
        break;
    case OP_MPU_CREATE:
        op->r_upload_id = reply_field(res, "UploadId");
        if (!op->r_upload_id)
            rc = -EIO;
        break;
    case OP_MPU_LIST:
        rc = s3_parse_uploads(op, res);
        break;
    }
    if (rc) {
        storage_op_fail(op, rc, "%s %s: %s", storage_op_names[op->kind], op->key ? op->key : "",
                rc == -ENOMEM ? "out of memory" : "unexpected reply");
        return;
    }
    storage_op_done(op);
}

void storage_s3_step(struct storage_op *op)
{
    struct storage *st = op->st;
    struct s3_call c = { .key = op->key };
    struct sigv4_pair q[5], h[2];
    char num[16], maxk[16];
    char *copy_src = NULL;
    size_t nh = 0;

    if (op->content_type)
        h[nh++] = (struct sigv4_pair){ "content-type", op->content_type };
    switch (op->kind) {
    case OP_PUT:
        c.method = "PUT";
        c.body = op->data;
        c.body_len = op->len;
        c.long_transfer = op->len > HASH_BODY_MAX;
        break;
    case OP_PUT_STREAM:
        c.method = "PUT";
        c.stream_body = true;
        c.stream_len = op->stream_len;
        c.max_attempts = 1;  /* a stream cannot be replayed */
        c.long_transfer = true;
        break;
    case OP_PUT_FILE: {
        struct stat sb;
        op->in_fd = open(op->path, O_RDONLY | O_CLOEXEC);
        if (op->in_fd < 0 || fstat(op->in_fd, &sb) < 0) {
            storage_op_fail(op, errno == ENOENT ? -ENOENT : -EIO, "cannot open %s: %s",
                    op->path, strerror(errno));
            return;
        }
        op->stream_len = sb.st_size;
        c.method = "PUT";
        c.stream_body = true;
        c.stream_len = sb.st_size;
        c.long_transfer = true;
        break;
    }
    case OP_GET:
        c.method = "GET";
        c.max_body = op->max;
        break;
    case OP_GET_STREAM:
        c.method = "GET";
        c.stream_response = true;
        c.long_transfer = true;
        break;
    case OP_HEAD:
        c.method = "HEAD";
        break;
    case OP_DELETE:
        c.method = "DELETE";
        break;
    case OP_COPY:
        /* PUT on the destination; the source is /bucket/key, encoded. */
        copy_src = sigv4_uri_encode(op->key, strlen(op->key), true);
        char *src = copy_src ? util_asprintf("/%s/%s", st->bucket, copy_src) : NULL;
        free(copy_src);
        copy_src = src;
        if (!copy_src) {
            storage_op_fail(op, -ENOMEM, "out of memory");
            return;
        }
        h[nh++] = (struct sigv4_pair){ "x-amz-copy-source", copy_src };
        c.method = "PUT";
        c.key = op->key2;
        break;
    case OP_LIST: {
        size_t n = 0;
        snprintf(maxk, sizeof maxk, "%d", op->max_keys);
        q[n++] = (struct sigv4_pair){ "list-type", "2" };
        q[n++] = (struct sigv4_pair){ "max-keys", maxk };
        if (op->prefix && *op->prefix)
            q[n++] = (struct sigv4_pair){ "prefix", op->prefix };
        if (op->token)
            q[n++] = (struct sigv4_pair){ "continuation-token", op->token };
        c.method = "GET";
        c.key = NULL;
        c.query = q;
        c.nquery = n;
        break;
    }
    case OP_MPU_CREATE:
        q[0] = (struct sigv4_pair){ "uploads", "" };
        c.method = "POST";
        c.query = q;
        c.nquery = 1;
        /* A repeated create leaves an orphan upload at worst, which the
         * nightly abort job removes. */
        c.max_attempts = 3;
        break;
    case OP_MPU_PART:
        snprintf(num, sizeof num, "%d", op->number);
        q[0] = (struct sigv4_pair){ "partNumber", num };
        q[1] = (struct sigv4_pair){ "uploadId", op->upload_id };
        c.method = "PUT";
        c.query = q;
        c.nquery = 2;
        c.body = op->data;
        c.body_len = op->len;
        c.long_transfer = true;
        break;
    case OP_MPU_COMPLETE:
        if (!op->xml && complete_xml(op) < 0) {
            storage_op_fail(op, -ENOMEM, "out of memory");
            return;
        }
        q[0] = (struct sigv4_pair){ "uploadId", op->upload_id };
        c.method = "POST";
        c.query = q;
        c.nquery = 1;
        c.body = op->xml;
        c.body_len = op->xml_len;
        c.max_attempts = 3;
        nh = 0;
        h[nh++] = (struct sigv4_pair){ "content-type", "application/xml" };
        break;
    case OP_MPU_ABORT:
        q[0] = (struct sigv4_pair){ "uploadId", op->upload_id };
        c.method = "DELETE";
        c.query = q;
        c.nquery = 1;
        break;
    case OP_MPU_LIST: {
        size_t n = 0;
        char *tkey = NULL, *tid = NULL;
        q[n++] = (struct sigv4_pair){ "uploads", "" };
        if (op->prefix && *op->prefix)
            q[n++] = (struct sigv4_pair){ "prefix", op->prefix };
        if (op->token) {
            tkey = op->token;
            char *nl = strchr(tkey, '\n');
            if (nl) {
                *nl = '\0';
                tid = nl + 1;
            }
            q[n++] = (struct sigv4_pair){ "key-marker", tkey };
            if (tid && *tid)
                q[n++] = (struct sigv4_pair){ "upload-id-marker", tid };
        }
        c.method = "GET";
        c.key = NULL;
        c.query = q;
        c.nquery = n;
        break;
    }
    }
    if (op->kind != OP_COPY && op->kind != OP_PUT && op->kind != OP_PUT_STREAM &&
        op->kind != OP_PUT_FILE && op->kind != OP_MPU_CREATE && op->kind != OP_MPU_COMPLETE)
        nh = 0;  /* content-type only where an object is written */
    c.hdrs = h;
    c.nhdrs = nh;
    s3_send(op, &c);
    free(copy_src);
}

/* Splits "http://host:port" into scheme and host:port; refuses a path. */
static int parse_endpoint(const char *ep, char **scheme, char **hostport)
{
    const char *sep = strstr(ep, "://");
    if (!sep || sep == ep)
        return -1;
    size_t sl = (size_t)(sep - ep);
    const char *h = sep + 3;
    size_t hl = strlen(h);
    while (hl > 0 && h[hl - 1] == '/')
        hl--;
    if (hl == 0 || memchr(h, '/', hl) || memchr(h, '?', hl) || memchr(h, '@', hl))
        return -1;
    *scheme = strndup(ep, sl);
    *hostport = strndup(h, hl);
    if (!*scheme || !*hostport)
        return -1;
    if (strcmp(*scheme, "http") && strcmp(*scheme, "https"))
        return -1;
    return 0;
}

static bool bucket_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return false;
    for (const char *p = b; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '.' || *p == '_'))
            return false;
    return true;
}

int storage_s3_setup(struct storage *st, const char *bucket, bool gs,
                    const struct storage_config *cfg, const char **err)
{
    char *scheme = NULL, *hostport = NULL, *def = NULL;
    int rc = -1;
    const char *region = cfg->region && *cfg->region ? cfg->region : gs ? "auto" : "us-east-1";
    const char *ep = cfg->endpoint && *cfg->endpoint ? cfg->endpoint : NULL;
    bool path_style = gs || cfg->path_style;

    if (!bucket_valid(bucket)) {
        *err = "bad bucket name";
        goto out;
    }
    if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key) {
        *err = "s3/gs storage needs an access key and a secret";
        goto out;
    }
    if (!ep) {
        def = gs ? strdup("https://storage.googleapis.com")
                 : util_asprintf("https://s3.%s.amazonaws.com", region);
        ep = def;
    }
    if (!ep || parse_endpoint(ep, &scheme, &hostport) < 0) {
        *err = "bad storage endpoint (want http[s]://host[:port])";
        goto out;
    }
    /* A dotted bucket cannot be a TLS virtual host: use path-style. */
    if (!path_style && strchr(bucket, '.') && !strcmp(scheme, "https"))
        path_style = true;
    st->bucket = strdup(bucket);
    st->region = strdup(region);
    st->access_key = strdup(cfg->access_key);
    st->secret_key = strdup(cfg->secret_key);
    if (path_style) {
        st->host = strdup(hostport);
        st->origin = util_asprintf("%s://%s", scheme, hostport);
        st->path_prefix = util_asprintf("/%s", bucket);
    } else {
        st->host = util_asprintf("%s.%s", bucket, hostport);
        st->origin = util_asprintf("%s://%s.%s", scheme, bucket, hostport);
        st->path_prefix = strdup("");
    }
    if (!st->bucket || !st->region || !st->access_key || !st->secret_key ||
        !st->host || !st->origin || !st->path_prefix) {
        *err = "out of memory";
        goto out;
    }
    st->kind = ST_S3;
    st->name = gs ? "gs" : "s3";
    rc = 0;
out:
    free(scheme);
    free(hostport);
    free(def);
    return rc;
}
