/* runner_host: what the runner's own origin (RUNNER_BASE_URL) serves; see
 * the header.  The runner key as a cookie is read by the gate (auth.c),
 * the hand-off that sets it by domain/participate.c. */
#include "studyhub/http/runner_host.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/http/jsonapi.h"
#include "studyhub/http/server.h"
#include "studyhub/http/static.h"

bool runner_host_is(const struct http_req *req, const struct config *cfg)
{
    const char *origin = cfg->runner_base_url, *authority, *host;

    if (!origin || !*origin || !(authority = strstr(origin, "://")))
        return false;
    authority += 3;
    host = http_req_header(req, "Host");
    return host && strcasecmp(host, authority) == 0;
}

bool runner_host_api_path(const char *path)
{
    static const char *const prefixes[] = {
        "/api/v1/studies/", "/api/v1/children/", "/api/v1/responses/",
        "/api/v1/past-sessions/", NULL,
    };

    for (int i = 0; prefixes[i]; i++)
        if (strncmp(path, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

bool runner_host_serves(const char *path)
{
    if (strncmp(path, "/studies/", 9) == 0) {
        char id[37];
        if (strlen(path) < 9 + 37 || path[9 + 36] != '/')
            return false;
        memcpy(id, path + 9, 36);
        id[36] = '\0';
        return jsonapi_is_uuid(id);
    }
    return strncmp(path, "/runners/", 9) == 0 || runner_host_api_path(path);
}

bool runner_host_encode_path(char *out, size_t outlen, const char *s)
{
    static const char keep[] = "-._~/!$&'()*+,;=:@";
    size_t n = strlen(out);

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || (c && strchr(keep, c));
        if (n + (plain ? 1 : 3) >= outlen) {
            out[n] = '\0';
            return false;
        }
        if (plain)
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, outlen - n, "%%%02X", c);
    }
    out[n] = '\0';
    return true;
}

bool runner_host_location(char *out, size_t outlen, const char *base, const char *path,
                          const char *query, const char *handoff)
{
    size_t n;

    if (snprintf(out, outlen, "%s", base) >= (int)outlen ||
        !runner_host_encode_path(out, outlen, path))
        return false;
    n = strlen(out);
    if (query && *query) {
        int m = snprintf(out + n, outlen - n, "?%s%s%s", query, handoff ? "&handoff=" : "",
                         handoff ? handoff : "");
        return m >= 0 && (size_t)m < outlen - n;
    }
    if (handoff) {
        int m = snprintf(out + n, outlen - n, "?handoff=%s", handoff);
        return m >= 0 && (size_t)m < outlen - n;
    }
    return true;
}

void runner_host_elsewhere(struct http_req *req)
{
    enum http_method m = http_req_method(req);
    const char *qs = http_req_query_string(req);
    char loc[2048];

    if (m != HTTP_GET && m != HTTP_HEAD) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        return;
    }
    /* The raw query as the client sent it, when it is already encoded. */
    if (strspn(qs, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-._~%!$&'()*+,;=:@/?") != strlen(qs))
        qs = NULL;
    if (!runner_host_location(loc, sizeof loc, http_req_base_url(req), http_req_path(req),
                              qs, NULL)) {
        jsonapi_reply_errorf(req, 404, "not_found", NULL, "Not found.");
        return;
    }
    http_add_header(req, "Location", loc);
    http_add_header(req, "Cache-Control", "no-store");
    http_reply(req, 302, "text/plain; charset=utf-8", "", 0);
}

void runner_host_not_found(struct http_req *req, void *arg)
{
    struct app *app = arg;

    if (runner_host_is(req, app->cfg))
        runner_host_elsewhere(req);
    else
        static_not_found(req, arg);
}
