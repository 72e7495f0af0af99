/* background: the one table of task kinds and scheduled jobs.  See
 * include/studyhub/tasks/background.h.
 *
 * To add a task kind: export its struct task_kind and add KIND(&it).  To
 * add a job: export its struct sched_job and add JOB(&it, "HH:MM");
 * SCHED_JOBS can move it or turn it off.  The order is the order of
 * `studyhubctl jobs`. */
#include "config.h"

#include "studyhub/tasks/background.h"

#include <stddef.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/domain/accounts.h"
#include "studyhub/queue/sched.h"
#include "studyhub/queue/task.h"
#include "studyhub/queue/task_queue.h"
#include "studyhub/tasks/announce.h"
#include "studyhub/tasks/build.h"
#include "studyhub/tasks/cleanup.h"
#include "studyhub/tasks/erase_storage.h"
#include "studyhub/tasks/purge_videos.h"
#include "studyhub/tasks/reconcile_videos.h"
#include "studyhub/tasks/test_sleep.h"
#include "studyhub/tasks/video_zip.h"

#define KIND(k) { .kind = (k) }
#define JOB(j, when) { .job = (j), .at = (when) }
#define DEBUG_KIND(k) { .kind = (k), .debug = true }
#define DEBUG_JOB(j, when) { .job = (j), .at = (when), .debug = true }

const struct background background_table[] = {
    /* The queue's own and the accounts' housekeeping. */
    JOB(&sched_cleanup_job_runs_job, "04:30"),   /* job_runs older than 90 days */
    DEBUG_JOB(&test_sleep_job, "off"),           /* the scheduler's tests */
    JOB(&task_cleanup_job, "04:45"),             /* cleanup_tasks */
    JOB(&accounts_cleanup_job, "04:30"),         /* cleanup_account_tokens */
    /* Videos: the zip, the reconcile and the nightly jobs. */
    KIND(&video_zip_kind),
    KIND(&reconcile_videos_kind),
    JOB(&abort_stale_uploads_job, "05:00"),
    JOB(&reconcile_videos_job, "05:30"),          /* queues the reconcile task */
    JOB(&purge_video_storage_job, "05:15"),
    /* The experiment builder and its nightly sweeps. */
    KIND(&build_kind),
    JOB(&cleanup_runners_job, "02:30"),
    JOB(&cleanup_builds_job, "02:00"),
    JOB(&cleanup_docker_images_job, "03:00"),
    JOB(&cleanup_checkouts_job, "04:00"),
    /* Erasure: the objects in storage an erasure left. */
    KIND(&erase_storage_kind),
    /* Messages: new studies to families. */
    JOB(&announce_new_studies_job, "10:00"),
    /* The kind the tests drive. */
    DEBUG_KIND(&test_sleep_kind),
};

const int background_count = (int)(sizeof background_table / sizeof background_table[0]);

int background_register(struct app *app)
{
    for (int i = 0; i < background_count; i++) {
        const struct background *b = &background_table[i];

        if (b->debug && !app->cfg->debug_routes)
            continue;
        if (b->kind && app->tasks && task_register(app->tasks, b->kind) < 0) {
            log_error("cannot register the task kind %s", b->kind->name);
            return -1;
        }
        if (b->job && app->sched && sched_add(app->sched, b->job, b->at) < 0) {
            log_error("cannot add the scheduled job %s", b->job->name);
            return -1;
        }
    }
    return 0;
}
