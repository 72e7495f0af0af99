/* videos_internal: what the files of the videos module share (videos.c:
 * names, storage, rendering, watching, links; video_pipe.c and
 * video_lambda.c: intake; video_zips.c: zips).  Not for other modules. */
#ifndef STUDYHUB_DOMAIN_VIDEOS_INTERNAL_H
#define STUDYHUB_DOMAIN_VIDEOS_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "studyhub/io/pg.h"

#define VIDEO_NAME_MAX 255      /* upstream's CharField(max_length=255) */

struct app;
struct http_req;
struct router;

/* Records a video (videos.c says its parameters); one row, columns: */
extern const struct pg_stmt video_record_stmt;
enum { VR_VERDICT, VR_UUID, VR_ATTRS, VR_STUDY, VR_RESPONSE };

/* The video of res's row 0 (its attributes in column col) as a JSON:API
 * document with status. */
void reply_video(struct http_req *req, struct app *app, const PGresult *res, int col,
                 int status);
/* A request and its app, for callbacks that need both (malloc'd; the
 * callback frees it). */
struct req_app {
    struct http_req *req;  /* borrowed */
    struct app *app;       /* borrowed */
};
struct req_app *req_app_new(struct http_req *req, struct app *app);

/* The access log (sql/084) gets who read which video's link (or zip),
 * written in the statement that makes it readable. */
#define VIDEO_LOG_COLS \
    "INSERT INTO access_log (user_id, user_uuid, user_email, study_id, study_uuid, action, object)"

/* s[0..n) is 1..max ASCII letters and digits. */
bool is_alnum_run(const char *s, size_t n, size_t max);

int video_pipe_routes(struct router *r);
int video_lambda_routes(struct router *r);
int video_zips_routes(struct router *r);

/* video_pipe.c, for its unit test: the value of field want in a form body
 * (decoded; malloc'd), or NULL; and whether sig is Pipe's base64
 * HMAC-SHA1 of url followed by payload under key. */
char *video_form_field(const char *body, size_t len, const char *want);
bool video_pipe_sig_matches(const char *key, const char *url, const char *payload,
                            const char *sig);

/* video_lambda.c, for its unit test: v as Python's json.dumps with
 * separators (",", ":") writes it (the Lambda signs that); whether sig is
 * the hex HMAC-SHA256 of that dump of dict under key; and a name in
 * Django's snake_case (pipeName -> pipe_name). */
struct evbuffer;
void video_py_dump(const json_t *v, struct evbuffer *out);
bool video_lambda_sig_ok(const char *key, json_t *dict, const char *sig);
char *video_underscore(const char *s);

#endif
