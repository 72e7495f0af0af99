/* runner_host: the runner's own origin (RUNNER_BASE_URL).  The unchanged
 * upstream runner reads a csrftoken cookie and relies on a session cookie,
 * which the sandbox of this origin's runner pages rules out.  On a host
 * of its own it runs unsandboxed, with cookies of that host only (the
 * runner key as sessionid, and a csrftoken), and that host answers the
 * runner's page, its files and its API routes, nothing else: the rest is
 * sent back to the site (GET) or refused. */
#ifndef STUDYHUB_HTTP_RUNNER_HOST_H
#define STUDYHUB_HTTP_RUNNER_HOST_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct http_req;

/* Whether req came addressed to RUNNER_BASE_URL's host[:port] (its Host
 * header, compared without case).  False when the setting is empty. */
bool runner_host_is(const struct http_req *req, const struct config *cfg);

/* The API routes a runner key opens (runner-api.md section 1, and the
 * family's own children and past sessions): prefixes of path. */
bool runner_host_api_path(const char *path);

/* Whether the runner host serves path: a study's page or files
 * (/studies/<uuid>/...), a shared runner's files (/runners/...), or the
 * runner's API routes. */
bool runner_host_serves(const char *path);

/* For a path the runner host does not serve: GET and HEAD go to the same
 * path and query on the site (302; the runner's exit URL lands there),
 * anything else is a 404. */
void runner_host_elsewhere(struct http_req *req);

/* A Location between the site and the runner's host, into out (outlen
 * bytes): base (an origin, or "" for a path alone), then path (decoded)
 * percent-encoded by runner_host_encode_path, then "?QUERY" when query
 * is given and not empty (raw, as the client sent it: the caller decides
 * whether it may pass), then handoff=CODE when handoff is given, after the
 * query's '&' or as the query.  False when it does not fit. */
bool runner_host_location(char *out, size_t outlen, const char *base, const char *path,
                          const char *query, const char *handoff);

/* The server's fallback (arg: struct app *): runner_host_elsewhere on the
 * runner host, else static_not_found. */
void runner_host_not_found(struct http_req *req, void *arg);

/* Appends s to out (of outlen bytes, NUL-ended, truncated) with every byte
 * outside unreserved characters, '/' and the sub-delimiters percent-encoded:
 * a decoded path made safe for a Location header.  False when cut short. */
bool runner_host_encode_path(char *out, size_t outlen, const char *s);

#endif
