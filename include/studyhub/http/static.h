/* static: the web pages and their assets (STATIC_DIR), loaded into memory
 * once at start and served from there, so a request never touches the
 * disk.  Each file has its content type, a strong ETag (a hash of its
 * bytes), a gzip copy when that is smaller, and a cache policy:
 *
 *   - files under /vendor/<package>@<version>/ never change: immutable;
 *   - a request carrying ?v=<the file's version> (pages are rewritten at
 *     load so that their src= and href= links carry it) is immutable too;
 *   - everything else, pages included, is "no-cache": revalidated with
 *     If-None-Match and answered 304 while unchanged.
 *
 * Pages have one route each (the static_pages table in static.c: a
 * pattern and its file), so /accounts/verify/<token>/ serves the same page
 * for every token; assets are reached through the rest-wildcard routes of
 * their folders.  Every route is ROUTE_PUBLIC: pages hold no data (they
 * read it from the JSON:API with the caller's session).
 *
 * A path that matches nothing answers a readable HTML 404 page when the
 * client accepts text/html and the path is not under /api/; JSON:API
 * errors otherwise (static_not_found, installed as the server's
 * fallback). */
#ifndef STUDYHUB_HTTP_STATIC_H
#define STUDYHUB_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>

struct router;
struct http_req;
struct static_site;

/* Limits of what is loaded: the folder is small by design. */
#define STATIC_MAX_FILE_BYTES (16u * 1024 * 1024)
#define STATIC_MAX_TOTAL_BYTES (128u * 1024 * 1024)
#define STATIC_MAX_FILES 4096

struct static_file {
    char *path;             /* URL path, e.g. "/js/api.js" (owned) */
    const char *type;       /* Content-Type (static string) */
    unsigned char *data;    /* the bytes (owned) */
    size_t len;
    unsigned char *gz;      /* gzip of data, NULL when not smaller (owned) */
    size_t gz_len;
    char etag[20];          /* "\"" 16 hex "\"" of SHA-256(data) */
    char gz_etag[24];       /* the same with "-gz": the gzip copy is another
                             * representation, so another strong ETag */
    char version[9];        /* 8 hex of the same hash: the ?v= value */
    bool immutable;         /* under /vendor/: its name carries the version */
    bool compressible;      /* a text type: Vary: Accept-Encoding */
};

/* Loads every regular file under dir (dot files and symbolic links are
 * skipped, so nothing outside dir can be reached).  A missing dir gives
 * an empty site (with a warning logged); a file or total over the limits
 * above, or an unreadable file, is an error: NULL and err says which. */
struct static_site *static_site_load(const char *dir, char *err, size_t errlen);
void static_site_free(struct static_site *site);

/* The file at a URL path ("/css/site.css"), or NULL. */
const struct static_file *static_site_find(const struct static_site *site,
                                           const char *path);
size_t static_site_count(const struct static_site *site);

/* The Content-Type for a file name, by its extension. */
const char *static_content_type(const char *name);
/* Whether an Accept-Encoding value accepts gzip (a q=0 refuses it). */
bool static_accepts_gzip(const char *accept_encoding);
/* Whether an If-None-Match value (a list, maybe weak tags, or *) names
 * etag (with its quotes); false when inm is NULL. */
bool static_etag_matches(const char *inm, const char *etag);

/* Adds the page and asset routes (all ROUTE_PUBLIC); 0, or -1 when the
 * router refused one. */
int static_routes(struct router *r);

/* The server's fallback for paths no route matches (arg: struct app *):
 * the HTML 404 page for a browser, a JSON:API 404 for the API. */
void static_not_found(struct http_req *req, void *arg);
/* Replies with the page file (a path of the site, "/labs/index.html"),
 * for a domain route that checked its address first (listings.c); the
 * HTML 404 page when the file is missing. */
void static_serve_page(struct http_req *req, const struct static_site *site,
                       const char *file);

#endif
