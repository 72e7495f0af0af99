/* build: the build_experiment task kind.  A study's experiment runner (the
 * ember-lookit-frameplayer repository, or the one its metadata names) is
 * built from one commit and published to storage, as a resumable state
 * machine on the loop (reference/lookit.md section 4, seeds 000 and 001),
 * with the upstream pain points of section 8 fixed.
 *
 * STAGES (task_stages rows, each saved with start, end, outcome and log):
 *   resolve_sha  the study's 40-hex metadata.last_known_player_sha, else the
 *                head of the repository's default branch (GITHUB_API_URL);
 *                a blank or invalid SHA is no error.  The repository is
 *                metadata.player_repo_url or RUNNER_REPO_URL and must start
 *                with a RUNNER_REPO_ALLOW prefix; any but RUNNER_REPO_URL
 *                must be approved for the study (sql/080_runner_approval.sql).
 *   download     {repo}/archive/{sha}.zip to BUILD_ROOT/checkouts/{sha}.zip
 *                (timeouts, retries with backoff, a cut download retried;
 *                skipped when the checkout exists or the runner is cached)
 *   extract      into BUILD_ROOT/checkouts/{sha}/ by io/archive (a child;
 *                unsafe archives, and any whose one top folder is not
 *                {repo}-{sha}/, refused; reused when present)
 *   build        BUILD_RUNNER=local: the checkout's build.sh in a scratch
 *                copy, inside the bubblewrap sandbox of tasks/sandbox.h as
 *                BUILD_UID with the BUILD_* limits (refused when the
 *                sandbox failed its check at start; BUILD_SANDBOX=none runs
 *                it on the host); docker: `docker build` of BUILDER_IMAGE,
 *                then a hardened `docker run --rm` with the checkout
 *                read-only at /checkouts and the output folder at
 *                /deployments.  Environment of section 4 only.
 *                BUILD_TIMEOUT_S kills the process group; a
 *                non-zero exit fails whatever was written; the tails of
 *                stdout and stderr go to the stage log.
 *   upload       the output to runners/{cache key}/, once per runner,
 *                several at once, retried, with content types, index.html
 *                files last; every study on that runner serves it from
 *                there (domain/participate.c: the latest successful build
 *                of the mode), so nothing is copied to a study's folder.
 *                A cached runner is only checked: its index.html HEADed.
 *   finish       study_build_settle (sql/050_builds.sql): is_building off,
 *                built on (deploy), ONE study log whose extra holds every
 *                stage, ONE email to the study admins; then the outcome:
 *                succeeded, failed (the failing stage and its log tail in
 *                the log and email) or cancelled.
 * A runner already built for the same repository, commit and environment
 * (runner_builds), by any study, is reused: download, extract and build
 * are skipped.  The cache key is those three and nothing of the study
 * (issue 19): the build's PREPEND_FINGERPRINT is /runners/{cache key}/.
 * Builds of one runner on a server wait for the one producing it.
 *
 * ONE BUILD PER STUDY: the task's subject is the study's uuid and both
 * modes share the kind, so tasks_one_active refuses a second build or
 * preview of a study across every server; the request marks the study
 * building in the same statement that queues the task.
 *
 * RESTARTS: a build whose server died is resumed in the stage it was in
 * (each stage redoes its work from the products of the finished ones),
 * twice at most, then failed with a log; a task that ends any other way
 * is settled by a trigger; studies marked building without a build are
 * unmarked at start.
 *
 * ROUTES (domain/builds.c; token or two-factor session; permissions edit_study__build,
 * edit_study__preview, read_study__details):
 *   POST   /api/v1/studies/{id}/build/        202 + the build; 409 + its id
 *   POST   /api/v1/studies/{id}/preview/      when one is queued or running
 *   GET    /api/v1/studies/{id}/builds/       builds with stages, paginated
 *   GET    /api/v1/studies/{id}/builds/{task}/
 *   DELETE /api/v1/studies/{id}/builds/{task}/   cancels (202)
 *   POST   /api/v1/studies/{id}/runner-approval/ a site reviewer
 *   DELETE /api/v1/studies/{id}/runner-approval/ (approve_runner_repo)
 *          approves or revokes the study's non-default repository
 *   GET    /api/v1/studies/{id}/builds/events     server-sent events: a
 *          snapshot, then every stage change of the study's builds as it
 *          happens on any server (Redis pub/sub, channel
 *          BUILD_EVENTS_CHANNEL) */
#ifndef STUDYHUB_TASKS_BUILD_H
#define STUDYHUB_TASKS_BUILD_H

struct app;
struct router;

#include "studyhub/domain/builds.h"

#define BUILD_KIND "build_experiment"

/* The kind, and the job cleanup_runners (02:30): shared runners that no
 * study serves and no build used for a week, their rows and files
 * (listed in tasks/background.c). */
struct sched_job;
struct task_kind;
extern const struct task_kind build_kind;
extern const struct sched_job cleanup_runners_job;

/* Sets the builder up (folders under BUILD_ROOT, the subscriber of live
 * events) and unmarks studies left building without a build.  Before
 * task_runner_start.  0 or -1. */
int build_start(struct app *app);
/* After task_runner_free (running builds are closed by then): ends the
 * event streams and frees the subscriber and what the builder owns. */
void build_stop(void);

/* The environment every docker client call gets (PATH, HOME and DOCKER_*
 * of the server's, nothing else: no secret reaches docker or its
 * plugins); NULL-terminated, valid while the builder runs. */
const char *const *build_docker_env(void);

/* BUILD_ROOT/checkouts and BUILD_ROOT/builds (for tasks/cleanup.c); NULL
 * before build_start. */
const char *build_checkouts_dir(void);
const char *build_builds_dir(void);

#endif
