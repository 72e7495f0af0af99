/* reconcile_videos: Buildhub's catch-up job for videos.  Webhooks get
 * lost (upstream #497 #968 #1005 #1418: videos in the bucket that the
 * site never heard of); this lists the storage page by page and records
 * every video that follows the naming scheme (domain/videos.h) but is
 * missing from the database, and reports the objects it cannot place.
 *
 * The task kind reconcile_videos (subject "videos": one at a time):
 *   page   list 1000 keys after the saved token; ONE statement records
 *          the page's videos (ON CONFLICT DO NOTHING: idempotent; the
 *          consent flag computed as the webhook does), upserts the
 *          unplaceable keys into video_unplaced, and saves the next token
 *          and the counters into tasks.payload, so a server that dies
 *          resumes after the last recorded page (restartable) and a page
 *          done twice changes nothing;
 *   finish drops video_unplaced rows not seen by this run (the objects
 *          are gone or placed) and ends with the counters as result.
 * Keys under a folder (experiments/, video-zips/, ...) belong to other
 * modules and are skipped; videos are top-level keys.  Unplaceable: a
 * top-level key that does not follow the scheme (Pipe's leftovers
 * included), or names a study or response that does not exist.
 *
 * Scheduled jobs (sched):
 *   reconcile_videos     05:30: queues the task (reports "queued task
 *                        <uuid>" or the one already running);
 *                        `studyhubctl run reconcile_videos` does the same
 *                        now.
 *   abort_stale_uploads  05:00: aborts incomplete multipart uploads
 *                        started more than STALE_UPLOAD_AGE_S (24 h) ago
 *                        (upstream #1427 #1438: they cost storage
 *                        forever). */
#ifndef STUDYHUB_TASKS_RECONCILE_VIDEOS_H
#define STUDYHUB_TASKS_RECONCILE_VIDEOS_H

struct sched_job;
struct task_kind;

#define RECONCILE_VIDEOS_KIND "reconcile_videos"

/* The kind and the two jobs (listed in tasks/background.c). */
extern const struct task_kind reconcile_videos_kind;
extern const struct sched_job reconcile_videos_job, abort_stale_uploads_job;

#endif
