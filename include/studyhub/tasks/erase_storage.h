/* erase_storage: the task kind that deletes from storage what an erasure
 * left (sql/085_erasure.sql, table erasure_objects): the video objects of
 * the deleted responses, then every cached zip of the studies involved
 * (prefix video-zips/<study uuid>_).  Queued by family_erase in the same
 * statement as the erasure, subject the erasure's uuid.
 *
 * States: LOAD a batch of erasure_objects rows, DELETE their objects (a
 * zips row: list its prefix and delete each zip, until none is left),
 * FORGET the batch's rows, again until none is left; FINISH marks the
 * erasure's storage_done_at.  The rows are the progress: a server that
 * dies mid-task leaves them, and the task resumes from LOAD (a missing
 * object counts as deleted).  A storage error retries with backoff. */
#ifndef STUDYHUB_TASKS_ERASE_STORAGE_H
#define STUDYHUB_TASKS_ERASE_STORAGE_H

#include <stddef.h>

struct task_kind;

#define ERASE_STORAGE_KIND "erase_storage"
#define ERASE_STORAGE_BATCH 100

/* {"a","b\\"c"}: keys[0..n) as a PostgreSQL text array literal, each
 * element quoted with its quotes and backslashes escaped; malloc'd (the
 * caller frees), NULL when out of memory. */
char *erase_storage_text_array(char *const *keys, size_t n);

/* The kind (listed in tasks/background.c). */
extern const struct task_kind erase_storage_kind;

#endif
