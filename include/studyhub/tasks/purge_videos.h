/* purge_videos: the scheduled job purge_video_storage (issue 15 point 5).
 *
 * 1. Withdrawal: the non-consent videos of withdrawn responses are hidden
 *    at once by the visibility rules (sql/084); this job deletes their
 *    objects, then their rows, in batches of PURGE_BATCH, and drops every
 *    cached zip of the studies they belonged to (a zip is a cache: the
 *    next request builds it again without them).
 * 2. Expiry: a video zip is deleted once no link to it can still work.
 *    A zip is reused only while younger than VIDEOS_ZIP_URL_TTL_S
 *    (tasks/video_zip.c), so every link to it expires before the zip is
 *    2 x VIDEOS_ZIP_URL_TTL_S old; older zips are deleted.
 *
 * Runs daily at 05:15 (SCHED_JOBS can move it) and on
 * `studyhubctl run purge_video_storage`.  An object that cannot be
 * deleted keeps its row, so the next run tries again. */
#ifndef STUDYHUB_TASKS_PURGE_VIDEOS_H
#define STUDYHUB_TASKS_PURGE_VIDEOS_H

struct sched_job;

#define PURGE_BATCH 100
/* Batches of withdrawn videos per run (the rest waits for the next). */
#define PURGE_BATCHES_MAX 100

/* The job purge_video_storage (listed in tasks/background.c). */
extern const struct sched_job purge_video_storage_job;

#endif
