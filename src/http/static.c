/* static: the web pages and assets of STATIC_DIR, held in memory (see
 * static.h for the cache policy).  Loading reads the whole folder once at
 * start, hashes each file, gzips the text ones and stamps the pages' links
 * with their targets' versions; serving is then a table lookup and a
 * reference to bytes already in memory. */
#include "config.h"   /* _GNU_SOURCE: memmem */

#include "studyhub/http/static.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "studyhub/core/app.h"
#include "studyhub/core/log.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/router.h"
#include "studyhub/http/server.h"

struct static_site {
    struct static_file *files;  /* owned array, sorted by path */
    size_t n, cap;
    size_t total;               /* bytes loaded (before gzip) */
};

/* ---- content types ---------------------------------------------------- */

static const struct {
    const char *ext;
    const char *type;
    bool text;                  /* worth gzipping */
} types[] = {
    { "html", "text/html; charset=utf-8", true },
    { "css", "text/css; charset=utf-8", true },
    { "js", "text/javascript; charset=utf-8", true },
    { "mjs", "text/javascript; charset=utf-8", true },
    { "json", "application/json", true },
    { "map", "application/json", true },
    { "txt", "text/plain; charset=utf-8", true },
    { "svg", "image/svg+xml", true },
    { "webmanifest", "application/manifest+json", true },
    { "png", "image/png", false },
    { "jpg", "image/jpeg", false },
    { "jpeg", "image/jpeg", false },
    { "gif", "image/gif", false },
    { "webp", "image/webp", false },
    { "ico", "image/vnd.microsoft.icon", false },
    { "woff2", "font/woff2", false },
    { "woff", "font/woff", false },
    { "wasm", "application/wasm", false },
    { "pdf", "application/pdf", false },
    { "mp3", "audio/mpeg", false },
    { "wav", "audio/wav", false },
    { "mp4", "video/mp4", false },
    { "webm", "video/webm", false },
};

static int type_index(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash : name, '.');

    if (!dot)
        return -1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return (int)i;
    return -1;
}

const char *static_content_type(const char *name)
{
    int i = type_index(name);
    return i < 0 ? "application/octet-stream" : types[i].type;
}

bool static_accepts_gzip(const char *ae)
{
    /* Tokens separated by commas, each maybe with ";q=..."; gzip (or *)
     * with q=0 is a refusal. */
    const char *p = ae;

    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",;");
        bool match = (n == 4 && strncasecmp(p, "gzip", 4) == 0) ||
                     (n == 1 && *p == '*');
        const char *end = p + strcspn(p, ",");
        if (match) {
            const char *q = strstr(p, "q=");
            if (q && q < end) {
                double v = strtod(q + 2, NULL);
                return v > 0;
            }
            return true;
        }
        p = end;
    }
    return false;
}

/* ---- loading ---------------------------------------------------------- */

static void file_cleanup(struct static_file *f)
{
    free(f->path);
    free(f->data);
    free(f->gz);
}

void static_site_free(struct static_site *site)
{
    if (!site)
        return;
    for (size_t i = 0; i < site->n; i++)
        file_cleanup(&site->files[i]);
    free(site->files);
    free(site);
}

/* Reads a whole file of the size stat gave; 0 or -errno. */
static int read_all(const char *fs_path, size_t len, unsigned char **out)
{
    int fd = open(fs_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    unsigned char *buf;
    size_t got = 0;

    if (fd < 0)
        return -errno;
    buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;   /* shrank while we read it */
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    return 0;
}

/* The gzip of data when it is smaller, else NULL (not worth sending). */
static unsigned char *gzip_of(const unsigned char *data, size_t len, size_t *out_len)
{
    z_stream zs = { 0 };
    unsigned char *out;
    uLong bound;

    /* windowBits 15 + 16: a gzip header and trailer, not zlib's. */
    if (len < 256 || deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    bound = deflateBound(&zs, (uLong)len) + 32;
    out = malloc(bound);
    if (!out) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (unsigned char *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)bound;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END || zs.total_out >= len) {
        deflateEnd(&zs);
        free(out);
        return NULL;
    }
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

/* The hash-derived fields and the gzip copy, from f->data. */
static void file_finish(struct static_file *f)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char hex[17];

    SHA256(f->data, f->len, md);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(f->etag, sizeof f->etag, "\"%s\"", hex);
    snprintf(f->gz_etag, sizeof f->gz_etag, "\"%s-gz\"", hex);
    snprintf(f->version, sizeof f->version, "%.8s", hex);
    free(f->gz);
    f->gz = NULL;
    f->gz_len = 0;
    if (f->compressible)
        f->gz = gzip_of(f->data, f->len, &f->gz_len);
}

static int add_file(struct static_site *site, const char *url_path, const char *fs_path,
                    size_t len, char *err, size_t errlen)
{
    struct static_file f = { 0 };
    int ti = type_index(url_path), rc;

    if (len > STATIC_MAX_FILE_BYTES || site->total + len > STATIC_MAX_TOTAL_BYTES ||
        site->n >= STATIC_MAX_FILES) {
        snprintf(err, errlen, "%s: over the static folder's limits (%u bytes a file, "
                 "%u in all, %d files)", fs_path, STATIC_MAX_FILE_BYTES,
                 STATIC_MAX_TOTAL_BYTES, STATIC_MAX_FILES);
        return -1;
    }
    if (site->n == site->cap) {
        size_t cap = site->cap ? site->cap * 2 : 64;
        struct static_file *nf = realloc(site->files, cap * sizeof *nf);
        if (!nf) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        site->files = nf;
        site->cap = cap;
    }
    rc = read_all(fs_path, len, &f.data);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", fs_path, strerror(-rc));
        return -1;
    }
    f.path = strdup(url_path);
    if (!f.path) {
        free(f.data);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f.len = len;
    f.type = ti < 0 ? "application/octet-stream" : types[ti].type;
    f.compressible = ti >= 0 && types[ti].text;
    f.immutable = strncmp(url_path, "/vendor/", 8) == 0;
    site->files[site->n++] = f;
    site->total += len;
    return 0;
}

/* Walks fs_dir (the folder of url_dir, which ends in '/'); depth-limited
 * so a loop of bind mounts cannot recurse forever. */
static int load_dir(struct static_site *site, const char *fs_dir, const char *url_dir,
                    int depth, char *err, size_t errlen)
{
    DIR *d;
    struct dirent *e;
    int rc = 0;

    if (depth > 16) {
        snprintf(err, errlen, "%s: folders nested too deep", fs_dir);
        return -1;
    }
    d = opendir(fs_dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", fs_dir, strerror(errno));
        return -1;
    }
    while (rc == 0 && (e = readdir(d))) {
        char fs[4096], url[4096];
        struct stat st;

        if (e->d_name[0] == '.')
            continue;   /* ., .., and hidden files are never served */
        if ((size_t)snprintf(fs, sizeof fs, "%s/%s", fs_dir, e->d_name) >= sizeof fs ||
            (size_t)snprintf(url, sizeof url, "%s%s", url_dir, e->d_name) >= sizeof url)
            continue;
        if (lstat(fs, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            size_t n = strlen(url);
            if (n + 1 < sizeof url) {
                url[n] = '/';
                url[n + 1] = '\0';
                rc = load_dir(site, fs, url, depth + 1, err, errlen);
            }
        } else if (S_ISREG(st.st_mode)) {
            rc = add_file(site, url, fs, (size_t)st.st_size, err, errlen);
        }
        /* Symbolic links and special files are skipped: what is served
         * is what lies under the folder. */
    }
    closedir(d);
    return rc;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(((const struct static_file *)a)->path, ((const struct static_file *)b)->path);
}

static int cmp_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct static_file *)elem)->path);
}

const struct static_file *static_site_find(const struct static_site *site, const char *path)
{
    if (!site || !site->n)
        return NULL;
    return bsearch(path, site->files, site->n, sizeof *site->files, cmp_key);
}

size_t static_site_count(const struct static_site *site)
{
    return site ? site->n : 0;
}

/* In a page, each src="/..." and href="/..." naming a file of the site
 * gets "?v=<its version>", so that the browser may keep it for a year and
 * a new version is a new URL.  Returns the new bytes, or NULL when nothing
 * changed (or out of memory: the page is then served unstamped). */
static unsigned char *stamp_links(const struct static_site *site, const struct static_file *page,
                                  size_t *out_len)
{
    const char *s = (const char *)page->data, *end = s + page->len;
    struct evbuffer *out = evbuffer_new();
    unsigned char *res = NULL;
    bool changed = false;

    if (!out)
        return NULL;
    while (s < end) {
        const char *hit = NULL, *p;
        size_t skip = 0;
        for (p = s; p < end && !hit; p++) {
            if ((size_t)(end - p) > 6 && strncmp(p, "src=\"/", 6) == 0)
                hit = p, skip = 5;
            else if ((size_t)(end - p) > 7 && strncmp(p, "href=\"/", 7) == 0)
                hit = p, skip = 6;
        }
        if (!hit) {
            evbuffer_add(out, s, (size_t)(end - s));
            break;
        }
        const char *url = hit + skip;
        const char *q = memchr(url, '"', (size_t)(end - url));
        if (!q) {
            evbuffer_add(out, s, (size_t)(end - s));
            break;
        }
        evbuffer_add(out, s, (size_t)(q - s));
        char path[1024];
        size_t n = (size_t)(q - url);
        if (n < sizeof path && !memchr(url, '?', n)) {
            memcpy(path, url, n);
            path[n] = '\0';
            const struct static_file *f = static_site_find(site, path);
            if (f && f != page && strncmp(f->type, "text/html", 9) != 0 && !f->immutable) {
                evbuffer_add_printf(out, "?v=%s", f->version);
                changed = true;
            }
        }
        s = q;
    }
    if (changed) {
        *out_len = evbuffer_get_length(out);
        res = malloc(*out_len ? *out_len : 1);
        if (res)
            evbuffer_remove(out, res, *out_len);
    }
    evbuffer_free(out);
    return res;
}

/* Pages share their header through partials: a line
 * "<!--#include NAME-->" becomes the bytes of /_partials/NAME.html, once,
 * at load (partials are never served themselves, and do not include).
 * 0, or -1 with err set when a page names a partial that is not there. */
#define INCLUDE_OPEN "<!--#include "
#define INCLUDE_CLOSE "-->"
#define PARTIALS_DIR "/_partials/"

static int expand_includes(const struct static_site *site, struct static_file *page,
                           char *err, size_t errlen)
{
    const char *s = (const char *)page->data, *end = s + page->len;
    struct evbuffer *out;
    const char *hit;

    if (strncmp(page->path, PARTIALS_DIR, strlen(PARTIALS_DIR)) == 0 ||
        !memmem(s, page->len, INCLUDE_OPEN, strlen(INCLUDE_OPEN)))
        return 0;
    if (!(out = evbuffer_new())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    while ((hit = memmem(s, (size_t)(end - s), INCLUDE_OPEN, strlen(INCLUDE_OPEN)))) {
        const char *name = hit + strlen(INCLUDE_OPEN);
        const char *close = memmem(name, (size_t)(end - name), INCLUDE_CLOSE,
                                   strlen(INCLUDE_CLOSE));
        char path[128];
        const struct static_file *part;
        size_t n = close ? (size_t)(close - name) : 0;

        bool ok = close && n > 0 && n <= 64;

        for (size_t i = 0; ok && i < n; i++)
            ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                 name[i] == '-';
        if (!ok) {
            snprintf(err, errlen, "%s: a malformed %s...%s", page->path, INCLUDE_OPEN,
                     INCLUDE_CLOSE);
            evbuffer_free(out);
            return -1;
        }
        snprintf(path, sizeof path, PARTIALS_DIR "%.*s.html", (int)n, name);
        if (!(part = static_site_find(site, path))) {
            snprintf(err, errlen, "%s includes %s, which is not in the folder", page->path, path);
            evbuffer_free(out);
            return -1;
        }
        evbuffer_add(out, s, (size_t)(hit - s));
        evbuffer_add(out, part->data, part->len);
        s = close + strlen(INCLUDE_CLOSE);
    }
    evbuffer_add(out, s, (size_t)(end - s));
    size_t len = evbuffer_get_length(out);
    unsigned char *data = malloc(len ? len : 1);
    if (!data) {
        snprintf(err, errlen, "out of memory");
        evbuffer_free(out);
        return -1;
    }
    evbuffer_remove(out, data, len);
    evbuffer_free(out);
    free(page->data);
    page->data = data;
    page->len = len;
    return 0;
}

struct static_site *static_site_load(const char *dir, char *err, size_t errlen)
{
    struct static_site *site = calloc(1, sizeof *site);
    struct stat st;

    if (!site) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        log_warn("static: %s is not a folder: no pages are served", dir);
        return site;
    }
    if (load_dir(site, dir, "/", 0, err, errlen) < 0) {
        static_site_free(site);
        return NULL;
    }
    qsort(site->files, site->n, sizeof *site->files, cmp_path);
    for (size_t i = 0; i < site->n; i++) {
        if (strncmp(site->files[i].type, "text/html", 9) == 0 &&
            expand_includes(site, &site->files[i], err, errlen) < 0) {
            static_site_free(site);
            return NULL;
        }
    }
    /* Assets first, so each page is stamped with their final versions. */
    for (size_t i = 0; i < site->n; i++)
        if (strncmp(site->files[i].type, "text/html", 9) != 0)
            file_finish(&site->files[i]);
    for (size_t i = 0; i < site->n; i++) {
        struct static_file *f = &site->files[i];
        size_t len;
        unsigned char *stamped;
        if (strncmp(f->type, "text/html", 9) != 0)
            continue;
        stamped = stamp_links(site, f, &len);
        if (stamped) {
            free(f->data);
            f->data = stamped;
            f->len = len;
        }
        file_finish(f);
    }
    log_info("static: %zu files (%zu bytes) from %s", site->n, site->total, dir);
    return site;
}

/* ---- serving ---------------------------------------------------------- */

bool static_etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);

    if (!inm)
        return false;
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

static void reply_file(struct http_req *req, const struct static_file *f, int status)
{
    const char *v = http_req_query(req, "v");
    bool forever = status == 200 && (f->immutable || (v && strcmp(v, f->version) == 0));
    bool gz = f->gz && static_accepts_gzip(http_req_header(req, "Accept-Encoding"));
    struct evbuffer *body;

    http_add_header(req, "Cache-Control",
                    forever ? "public, max-age=31536000, immutable" : "no-cache");
    if (f->compressible)
        http_add_header(req, "Vary", "Accept-Encoding");
    if (status == 200) {
        const char *inm = http_req_header(req, "If-None-Match");
        http_add_header(req, "ETag", gz ? f->gz_etag : f->etag);
        /* Either encoding's tag names the same bytes once decoded. */
        if (static_etag_matches(inm, f->etag) ||
            (f->gz && static_etag_matches(inm, f->gz_etag))) {
            http_reply(req, 304, NULL, NULL, 0);
            return;
        }
    }
    body = evbuffer_new();
    if (!body) {
        jsonapi_reply_unavailable(req, "Memory");
        return;
    }
    if (gz)
        http_add_header(req, "Content-Encoding", "gzip");
    /* By reference: the site lives until the server is freed (studyhub.c
     * frees it after the HTTP server), so no copy is needed. */
    evbuffer_add_reference(body, gz ? f->gz : f->data, gz ? f->gz_len : f->len, NULL, NULL);
    http_reply_buffer(req, status, f->type, body);
    evbuffer_free(body);
}

/* The pages: a route each, and the file it serves. */
static const struct {
    const char *pattern;
    const char *file;
} static_pages[] = {
    { "/", "/index.html" },
    { "/signup/", "/signup/index.html" },
    { "/login/", "/login/index.html" },
    { "/logout/", "/logout/index.html" },
    { "/accounts/verify/{token}/", "/accounts/verify/index.html" },
    { "/accounts/password-reset/", "/accounts/password-reset/index.html" },
    { "/accounts/password-reset/{token}/", "/accounts/password-reset/confirm.html" },
    { "/account/", "/account/index.html" },
    { "/children/", "/children/index.html" },
    { "/children/{id}/", "/children/edit.html" },
    { "/demographics/", "/demographics/index.html" },
    { "/studies/", "/studies/index.html" },
    { "/studies/history/", "/studies/history.html" },
    { "/studies/{id}/", "/studies/detail.html" },
};

static const char fallback_404[] =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    "<title>Page not found</title></head><body><main><h1>Page not found</h1>"
    "<p>There is no page at this address. <a href=\"/\">Go to the home page</a>.</p>"
    "</main></body></html>\n";

static void reply_html_404(struct http_req *req, const struct static_site *site)
{
    const struct static_file *f = static_site_find(site, "/404.html");

    if (f) {
        reply_file(req, f, 404);
        return;
    }
    http_add_header(req, "Cache-Control", "no-cache");
    http_reply(req, 404, "text/html; charset=utf-8", fallback_404, sizeof fallback_404 - 1);
}

static bool wants_html(struct http_req *req)
{
    const char *accept = http_req_header(req, "Accept");
    const char *path = http_req_path(req);

    return strncmp(path, "/api/", 5) != 0 && accept && strstr(accept, "text/html");
}

void static_not_found(struct http_req *req, void *arg)
{
    struct app *app = arg;

    if (wants_html(req)) {
        reply_html_404(req, app->site);
        return;
    }
    jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
}

void static_serve_page(struct http_req *req, const struct static_site *site,
                       const char *file)
{
    const struct static_file *f = static_site_find(site, file);

    if (f)
        reply_file(req, f, 200);
    else
        reply_html_404(req, site);
}

/* The researcher and admin pages (issue 16): their own table, so the
 * family pages above and these grow without touching each other.  Public
 * like the others: a page holds no data, and each one asks the API, whose
 * policies (researcher or site admin, two-factor verified) guard it. */
static const struct {
    const char *pattern;
    const char *file;
} research_pages[] = {
    { "/researcher/", "/researcher/index.html" },
    { "/researcher/two-factor/", "/researcher/two-factor.html" },
    { "/researcher/labs/", "/researcher/labs.html" },
    { "/researcher/labs/{id}/", "/researcher/lab.html" },
    { "/researcher/studies/{id}/", "/researcher/study.html" },
    { "/researcher/studies/{id}/data/", "/researcher/data.html" },
    { "/admin/", "/admin/index.html" },
    { "/admin/users/", "/admin/users.html" },
    { "/admin/operations/", "/admin/operations.html" },
    { "/researcher/studies/{id}/analytics/", "/researcher/analytics.html" },
    { "/researcher/labs/{id}/analytics/", "/researcher/analytics.html" },
    { "/researcher/labs/{id}/participants/", "/researcher/participants.html" },
};

/* The public pages of issue 18: one page for the seven texts a site
 * admin edits (its script reads the address to know which), the support
 * form, and the admin page that edits the texts. */
static const struct {
    const char *pattern;
    const char *file;
} public_pages[] = {
    { "/faq/", "/info/page.html" },
    { "/privacy/", "/info/page.html" },
    { "/terms/", "/info/page.html" },
    { "/scientists/", "/info/page.html" },
    { "/resources/", "/info/page.html" },
    { "/publications/", "/info/page.html" },
    { "/contact/", "/info/page.html" },
    { "/support/", "/info/support.html" },
    { "/admin/pages/", "/admin/pages.html" },
};

static const char *page_file(const char *pattern)
{
    for (size_t i = 0; i < sizeof public_pages / sizeof public_pages[0]; i++)
        if (strcmp(public_pages[i].pattern, pattern) == 0)
            return public_pages[i].file;
    for (size_t i = 0; i < sizeof static_pages / sizeof static_pages[0]; i++)
        if (strcmp(static_pages[i].pattern, pattern) == 0)
            return static_pages[i].file;
    for (size_t i = 0; i < sizeof research_pages / sizeof research_pages[0]; i++)
        if (strcmp(research_pages[i].pattern, pattern) == 0)
            return research_pages[i].file;
    return NULL;
}

static void static_page(struct http_req *req, struct app *app)
{
    const char *file = page_file(http_req_route(req));
    const struct static_file *f = file ? static_site_find(app->site, file) : NULL;

    if (f) {
        reply_file(req, f, 200);
        return;
    }
    static_not_found(req, app);
}

static void static_asset(struct http_req *req, struct app *app)
{
    const struct static_file *f = static_site_find(app->site, http_req_path(req));

    /* Pages are served only at their routes, never as /x/index.html. */
    if (!f || strncmp(f->type, "text/html", 9) == 0) {
        static_not_found(req, app);
        return;
    }
    reply_file(req, f, 200);
}

static const struct route static_route_table[] = {
    { HTTP_GET, "/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/signup/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/login/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/logout/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/accounts/verify/{token}/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/accounts/password-reset/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/accounts/password-reset/{token}/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/account/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/children/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/children/{id}/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/demographics/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/studies/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/studies/history/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/studies/{id}/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/css/*", static_asset, ROUTE_PUBLIC },
    { HTTP_GET, "/js/*", static_asset, ROUTE_PUBLIC },
    { HTTP_GET, "/img/*", static_asset, ROUTE_PUBLIC },
    { HTTP_GET, "/vendor/*", static_asset, ROUTE_PUBLIC },
};

static const struct route research_route_table[] = {
    { HTTP_GET, "/researcher/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/two-factor/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/labs/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/labs/{id}/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/studies/{id}/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/studies/{id}/data/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/admin/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/admin/users/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/admin/operations/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/studies/{id}/analytics/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/labs/{id}/analytics/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/researcher/labs/{id}/participants/", static_page, ROUTE_PUBLIC },
};

static const struct route public_route_table[] = {
    { HTTP_GET, "/faq/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/privacy/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/terms/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/scientists/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/resources/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/publications/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/contact/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/support/", static_page, ROUTE_PUBLIC },
    { HTTP_GET, "/admin/pages/", static_page, ROUTE_PUBLIC },
};

int static_routes(struct router *r)
{
    _Static_assert(sizeof public_pages / sizeof public_pages[0] ==
                   sizeof public_route_table / sizeof public_route_table[0],
                   "one route per public page");
    for (size_t i = 0; i < sizeof public_pages / sizeof public_pages[0]; i++) {
        if (strcmp(public_route_table[i].pattern, public_pages[i].pattern) != 0) {
            log_error("static: route %s has no page", public_route_table[i].pattern);
            return -1;
        }
    }
    if (ROUTER_ADD_TABLE(r, public_route_table) < 0)
        return -1;

    _Static_assert(sizeof research_pages / sizeof research_pages[0] ==
                   sizeof research_route_table / sizeof research_route_table[0],
                   "one route per researcher page");
    for (size_t i = 0; i < sizeof research_pages / sizeof research_pages[0]; i++) {
        if (strcmp(research_route_table[i].pattern, research_pages[i].pattern) != 0) {
            log_error("static: route %s has no page", research_route_table[i].pattern);
            return -1;
        }
    }
    if (ROUTER_ADD_TABLE(r, research_route_table) < 0)
        return -1;

    /* Each page route must name a page of static_pages (same order). */
    for (size_t i = 0; i < sizeof static_pages / sizeof static_pages[0]; i++) {
        if (strcmp(static_route_table[i].pattern, static_pages[i].pattern) != 0) {
            log_error("static: route %s has no page", static_route_table[i].pattern);
            return -1;
        }
    }
    return ROUTER_ADD_TABLE(r, static_route_table);
}
