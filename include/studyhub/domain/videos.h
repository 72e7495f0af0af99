/* videos: webcam video coming in and researchers watching it
 * (reference/lookit.md section 6, runner-api.md section 5).
 *
 * Routes (handlers get the struct app as their arg):
 *   POST /exp/renamevideo/        Pipe's webhook: X-Pipe-Signature =
 *                                 base64(HMAC-SHA1(PIPE_WEBHOOK_KEY,
 *                                 scheme://host/path + payload)); on
 *                                 "upload success" the object is copied to
 *                                 its searchable name, the original and its
 *                                 .jpg deleted, and a Video recorded.  200,
 *                                 403 (signature, not a success, empty
 *                                 name), 400 (missing field, bad name), 404
 *                                 (object, study or response missing), 503
 *                                 (storage or database away; Pipe retries).
 *   POST /api/v1/video/           the Lambda of direct S3 uploads:
 *                                 X-AWS-Lambda-HMAC-Sig = hex
 *                                 HMAC-SHA256(AWS_LAMBDA_SECRET_ACCESS_KEY,
 *                                 compact JSON of the attributes); 201.
 *   GET  /api/v1/videos/          ?study=<uuid> and/or ?response=<uuid>:
 *                                 the videos the caller may watch, each
 *                                 with a url valid for 10 minutes.
 *   GET  /api/v1/videos/{id}/     one of them.
 *   POST /api/v1/studies/{id}/video-zips/  {consent_only: bool}: queues
 *                                 build_zipfile_of_videos (tasks/video_zip):
 *                                 202 with the task, 409 with the one
 *                                 already building the same file set.
 *   GET  /storage/<key>?expires=&sig=  file:// objects behind signed,
 *                                 expiring links (sendfile, Range).
 *
 * DECISIONS
 * - Recording is idempotent: the same webhook twice records one video
 *   (INSERT ... ON CONFLICT DO NOTHING); a webhook whose original is gone
 *   but whose target exists (the first delivery copied it) succeeds.
 * - Never a 500 for bad input: an unknown study or response is a 404 with
 *   what was not found; a name that does not follow the scheme is a 400.
 * - The consent flag (upstream #598) is the consent- prefix OR the frame's
 *   frameType == "CONSENT" in exp_data, computed while the response row is
 *   locked FOR SHARE; a trigger on responses (sql/040_videos.sql) marks
 *   videos recorded before the PATCH that names the consent frame.
 * - Who may watch (sql/040 video_visible): preview responses' videos with
 *   the preview read permission; others with read_study__responses once
 *   consent was accepted, and their consent footage also to holders of
 *   edit_study__responses__consent_rulings (the consent manager).
 * - Video names: [consent-]<prefix>_<study uuid>_<frame id>_<response
 *   uuid>_<ms>_<rand>[.<ext>].  Parsed from both ends, so a frame id may
 *   hold '_' (upstream splits on '_' and fails on those). */
#ifndef STUDYHUB_DOMAIN_VIDEOS_H
#define STUDYHUB_DOMAIN_VIDEOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The zip task's kind (tasks/video_zip.c runs it; the route here queues
 * it by this name, so the domain needs nothing from the tasks layer). */
#define VIDEO_ZIP_KIND "build_zipfile_of_videos"
/* Where zips live in the storage (videos are top-level keys). */
#define VIDEO_ZIP_PREFIX "video-zips/"

struct app;
struct router;
struct storage;

/* Presigned links for watching a video, and for a zip (seconds). */
#define VIDEOS_URL_TTL_S 600
#define VIDEOS_ZIP_URL_TTL_S 1800
#define VIDEOS_FRAME_MAX 255

/* A parsed video name. */
struct videos_name {
    bool consent;                    /* the consent- prefix was there */
    char study[37];                  /* lower-case uuid */
    char response[37];               /* lower-case uuid */
    char frame[VIDEOS_FRAME_MAX + 1];
    int64_t ms;                      /* upload time, ms since the epoch */
};

/* Parses name (with an extension when has_ext: the key of a stored
 * video).  Returns 0, or -1 with why in err. */
int videos_parse_name(const char *name, bool has_ext, struct videos_name *out,
                      char *err, size_t errlen);

/* The storage of app->cfg (STORAGE_URL, S3_*, STORAGE_LINK_SECRET, ...),
 * carried by app->fetch.  file:// links point at public_base (BASE_URL,
 * else http://LISTEN_ADDR:port).  An empty STORAGE_LINK_SECRET gets a
 * random one for this process (links then die with it).  NULL with a
 * message on error. */
struct storage *videos_storage_new(struct app *app, int port, char *err,
                                   size_t errlen);

/* The page CSP's media-src gets st's origin (an s3/gs backend), so the
 * consent manager plays videos from presigned links; videos_storage_new
 * calls it.  0, or -1 when no origin could be had. */
int videos_media_origin(struct app *app, struct storage *st);

/* The Content-Security-Policy of every GET /storage/ reply: no
 * allow-same-origin, so stored HTML never runs as the API's origin. */
#define VIDEOS_STORAGE_CSP \
    "sandbox allow-scripts allow-forms allow-popups; frame-ancestors 'none'"

/* The Pipe webhook and upload Lambda (signed), videos and zips
 * (researcher), /storage/ (signed links): 0, or -1 when the router
 * refused one. */
int videos_routes(struct router *r);

#endif
