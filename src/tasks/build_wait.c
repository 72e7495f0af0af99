/* build_wait: what a build waits on between its steps (see enum bl_wait
 * in build_internal.h): one thing at a time, named, changed only here, so
 * a log line and a debugger say what a build is doing; and bl_halt, which
 * stops whatever that is. */
#include "config.h"

#include "studyhub/tasks/build_internal.h"

const char *const bl_wait_names[] = {
    [BW_NONE] = "nothing", [BW_QUERY] = "query", [BW_GITHUB] = "github",
    [BW_FLIGHT] = "flight", [BW_CHILD] = "child", [BW_UPLOAD] = "upload",
    [BW_TIMER] = "timer",
};

void bl_wait(struct build *b, enum bl_wait w)
{
    if (b->wait != w)
        log_debug("build %" PRId64 ": waits on %s -> %s", b->t->id,
                  bl_wait_names[b->wait], bl_wait_names[w]);
    b->wait = w;
}

void bl_wait_end(struct build *b, enum bl_wait w)
{
    if (b->wait == w)
        bl_wait(b, BW_NONE);
}

int bl_query(struct build *b, const struct pg_stmt *stmt, int n,
             const char *const *params, task_pg_cb cb)
{
    bl_wait(b, BW_QUERY);
    if (task_pg_exec(b->t, stmt, n, params, cb) < 0) {
        bl_wait(b, BW_NONE);
        return -1;
    }
    return 0;
}

void bl_wait_timer(struct build *b, int64_t ms)
{
    bl_wait(b, BW_TIMER);
    util_timer_ms(b->timer, ms);
}

void bl_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct build *b = arg;

    bl_wait_end(b, BW_TIMER);
    task_wake(b->t);
}

/* Stops what the build waits on (a GitHub call, a flight, a child, an
 * upload, a timer); a query out still comes back to its callback. */
void bl_halt(struct build *b)
{
    if (b->req) {
        fetch_cancel(b->req);
        b->req = NULL;
    }
    flight_leave(b);
    if (b->proc) {
        proc_abandon(b->proc);
        b->proc = NULL;
    }
    bl_disk_watch_stop(b);
    if (b->up) {
        up_free(b->up);
        b->up = NULL;
    }
    if (b->timer)
        evtimer_del(b->timer);
    if (b->wait != BW_QUERY)
        bl_wait(b, BW_NONE);    /* a query out still comes back */
}
