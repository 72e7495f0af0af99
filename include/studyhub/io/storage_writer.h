/* storage_writer: a streamed multipart upload on top of io/storage. */
#ifndef STUDYHUB_IO_STORAGE_WRITER_H
#define STUDYHUB_IO_STORAGE_WRITER_H

#include "studyhub/io/storage.h"

#include <sys/types.h>

/* A streamed multipart upload: the producer writes bytes as it makes them
 * (a ZIP writer, say); full parts are uploaded while it goes on, at most
 * two at a time, so memory stays under three parts whatever the total.
 * Any failure aborts the upload on the backend. */
struct storage_writer;
/* Called once when the object is complete (err 0) or has failed. */
typedef void (*storage_writer_done_fn)(const struct storage_result *res,
                                       void *arg);
/* Called when a write that returned less than asked may be retried. */
typedef void (*storage_writer_ready_fn)(void *arg);

struct storage_writer *storage_writer_new(struct storage *st,
                                          const char *key,
                                          const char *content_type,
                                          size_t part_size,
                                          storage_writer_done_fn done,
                                          storage_writer_ready_fn ready,
                                          void *arg);
/* Copies up to len bytes in; returns how many were taken (0..len), or -1
 * when the writer has failed (done has been or will be called).  Fewer
 * than len: wait for `ready`. */
ssize_t storage_writer_write(struct storage_writer *w, const void *data,
                             size_t len);
/* No more bytes: the rest is uploaded and the upload completed; done is
 * called then.  The writer frees itself after done. */
void storage_writer_finish(struct storage_writer *w);
/* Stops: no callback runs again; the upload is aborted in the background. */
void storage_writer_cancel(struct storage_writer *w);

#endif
