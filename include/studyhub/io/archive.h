/* archive: safe extraction of untrusted zip archives (experiment runner
 * repositories downloaded from GitHub, or from whatever URL a researcher
 * put in a study's metadata) with libarchive.
 *
 * WHAT IS REFUSED (the whole archive fails; nothing is left behind):
 *   absolute names, '..' components, backslashes, names longer than
 *   PATH_MAX or with a component longer than NAME_MAX; hard links; symbolic
 *   links whose target is absolute or has a '..' component (so a link can
 *   only point down into its own folder, which stays inside the tree);
 *   devices, FIFOs, sockets and any other type but file, folder and link;
 *   encrypted entries; the same name twice; more than max_files entries or
 *   max_bytes of content, counted as running totals while the data is
 *   written (a zip's declared sizes are not trusted); any libarchive
 *   warning (a corrupt archive is not "mostly fine").
 * WHAT IS CHANGED: modes are 0755 for folders and executables, 0644 for
 *   other files (setuid, setgid and sticky bits are dropped); owners and
 *   times are not restored.  Symbolic links are created last, after every
 *   file, and every path component is opened with O_NOFOLLOW, so nothing
 *   is ever written through a link.
 *
 * WHERE IT RUNS: archive_extract_start does the work in a supervised child
 * (this very binary re-executed as `studyhub --extract-archive ...`,
 * see archive_child_main) rather than in bounded slices on the loop:
 *  - the archive is hostile input: a libarchive bug it triggers (there
 *    have been several CVEs in the zip reader) crashes a child, not the
 *    server with every request and task in it;
 *  - decompression and writes of a large tree cost CPU and disk time the
 *    loop never sees, whatever the disk's latency, and the timeout kills
 *    the child's whole process group;
 *  - the child's address space is thrown away: no allocator growth in the
 *    server after extracting a 100 MB tree.
 * The price is one fork+exec per extraction (a few milliseconds).  The
 * child extracts into a temporary folder beside the destination; the
 * parent renames it into place (one rename(2), atomic on the same file
 * system), stripping the single top-level folder GitHub puts in its
 * archives.  If the destination appeared meanwhile (another task or server
 * extracted the same commit), the temporary copy is discarded and the
 * existing one is used. */
#ifndef STUDYHUB_IO_ARCHIVE_H
#define STUDYHUB_IO_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proc_table;
struct archive_job;

/* The first argument that makes the studyhub binary an extraction child. */
#define ARCHIVE_CHILD_FLAG "--extract-archive"

struct archive_limits {
    uint64_t max_bytes;    /* content bytes of all entries together */
    uint64_t max_files;    /* entries (files, folders and links) */
};

struct archive_stats {
    uint64_t files;        /* regular files written */
    uint64_t dirs;         /* folders created */
    uint64_t links;        /* symbolic links created */
    uint64_t bytes;        /* content bytes written */
};

/* Extracts the zip at zip_path into dest, which must not exist (it is
 * created 0755).  Synchronous and unbounded in time: call it only in a
 * child (archive_child_main) or a test.  Returns 0, or -1 with a message
 * in err; on failure dest is removed again.  st may be NULL. */
int archive_extract_sync(const char *zip_path, const char *dest,
                         const struct archive_limits *lim,
                         struct archive_stats *st, char *err, size_t errlen);

/* Removes a tree without following symbolic links (unlinkat/openat with
 * O_NOFOLLOW).  Synchronous: children and tests only.  0 or -1 (errno). */
int archive_remove_tree(const char *path);

/* main() of the child: argv = { prog, ARCHIVE_CHILD_FLAG, ZIP, DEST,
 * MAX_BYTES, MAX_FILES }.  Prints one JSON line on stdout
 * ({"ok":true,"files":..,"dirs":..,"links":..,"bytes":..} or
 * {"ok":false,"error":"..."}) and returns the exit status (0 or 1). */
int archive_child_main(int argc, char **argv);

/* The end of an asynchronous extraction: err 0 (final_dir is ready, made
 * by us or found already there: reused is then true) or -1 with a message
 * (msg; borrowed for the call).  st is zero when reused.  Called exactly
 * once, from the loop, unless the job was cancelled. */
typedef void (*archive_done_fn)(int err, const char *msg, bool reused,
                                const struct archive_stats *st, void *arg);

/* Extracts zip_path into final_dir through a child of pt (see the top of
 * this file).  expect_top, when not NULL, is the one top folder the
 * archive must hold (GitHub's "<repo>-<sha>"; the name part compared
 * without case): any other layout is refused and nothing is kept, so a
 * tree that is not the commit asked for never becomes its checkout.
 * self_exe is the studyhub binary (NULL: /proc/self/exe);
 * timeout_ms bounds the child (0: none).  Returns the job, or NULL with a
 * message when the child cannot be started (done is then never called). */
struct archive_job *archive_extract_start(struct proc_table *pt,
                                          const char *self_exe,
                                          const char *zip_path,
                                          const char *final_dir,
                                          const char *expect_top,
                                          const struct archive_limits *lim,
                                          long timeout_ms, archive_done_fn done,
                                          void *arg, char *err, size_t errlen);
/* Stops the job (the child's group is killed, its temporary folder
 * removed by a `rm -rf` child); done is not called. */
void archive_job_cancel(struct archive_job *j);

/* Starts `rm -rf -- path` as a child of pt and forgets it (logged when it
 * fails).  For folders that may be large: never removed on the loop. */
int archive_remove_later(struct proc_table *pt, const char *path);

#endif
