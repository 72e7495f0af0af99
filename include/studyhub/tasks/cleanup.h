/* cleanup: the experiment builder's nightly sweeps, as scheduled jobs
 * (queue/sched.h: a Redis lock so one server runs each, a missed run caught
 * up at start, every run's outcome kept; `studyhubctl jobs`, `run JOB`):
 *
 *   02:00 cleanup_builds         BUILD_ROOT/builds/<task>/ folders (logs,
 *                                outputs) older than a day, except those of
 *                                queued or running builds
 *   03:00 cleanup_docker_images  `DOCKER_BIN image prune -f --filter
 *                                until=24h` (dangling images of earlier
 *                                builder builds); BUILD_RUNNER=docker only
 *   04:00 cleanup_checkouts      BUILD_ROOT/checkouts entries (checkouts,
 *                                archives, leftovers of interrupted
 *                                downloads and extractions) untouched for
 *                                a day and not used by a queued or running
 *                                build (a build touches its checkout when
 *                                it uses it)
 *
 * Folders are removed by `rm -rf` children, never on the loop. */
#ifndef STUDYHUB_TASKS_CLEANUP_H
#define STUDYHUB_TASKS_CLEANUP_H

struct sched_job;

/* The three jobs (listed in tasks/background.c). */
extern const struct sched_job cleanup_builds_job, cleanup_docker_images_job,
    cleanup_checkouts_job;

#endif
