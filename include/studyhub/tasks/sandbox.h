/* sandbox: the bubblewrap command line that runs a runner's build.sh with
 * nothing of the host but what a build needs (issue 11, point 1).
 *
 * Inside, the build sees (on a root that is read-only):
 *   /usr (and /bin, /lib... as the host has them: links or read-only
 *   folders), a few files of /etc that hold no secret (program
 *   alternatives, TLS roots, the loader cache, the time zone; with the
 *   network also resolv.conf and hosts), a fresh /proc of its own PID
 *   namespace, a minimal /dev, a private /tmp of tmp_mb MiB (HOME is
 *   /tmp/home), the checkout read-only at SANDBOX_CHECKOUT, its scratch
 *   folder writable at SANDBOX_BUILD (the working folder) and its output
 *   folder writable at SANDBOX_OUTPUT; and an environment holding only
 *   the variables it is given.
 * Namespaces: user (uid and gid 65534 inside, no capability, no further
 *   user namespace), PID, IPC, UTS, cgroup when the kernel has it, mount,
 *   and network unless network is set.  --die-with-parent and the PID
 *   namespace make killing bwrap kill everything the build started;
 *   --new-session keeps it off the server's terminal.
 * What it cannot see: every other file of the host (the server's var/,
 *   storage, admin socket, other checkouts, /etc/shadow, /root, /home),
 *   the host's processes and their /proc, the host's loopback and
 *   abstract Unix sockets (without the network).
 *
 * Pure: sandbox_argv only assembles strings (the unit test asserts the
 * exact command line); sandbox_host_probe is the one function that looks
 * at the machine. */
#ifndef STUDYHUB_TASKS_SANDBOX_H
#define STUDYHUB_TASKS_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#define SANDBOX_CHECKOUT "/checkout"   /* the checkout, read-only */
#define SANDBOX_BUILD "/build"         /* the scratch copy: cwd, writable */
#define SANDBOX_OUTPUT "/output"       /* STUDY_OUTPUT_DIR, writable */
#define SANDBOX_HOME "/tmp/home"       /* HOME, in the private /tmp */
#define SANDBOX_UID "65534"            /* the build's uid and gid inside */

/* The top-level folders of the system that may be links into /usr. */
#define SANDBOX_NTOP 6
extern const char *const sandbox_top_dirs[SANDBOX_NTOP];

enum sandbox_top_kind { SANDBOX_TOP_ABSENT, SANDBOX_TOP_DIR, SANDBOX_TOP_LINK };

/* How the host lays out /bin, /sbin, /lib, /lib32, /lib64 and /libx32
 * (Debian 12: links to usr/...). */
struct sandbox_host {
    enum sandbox_top_kind kind[SANDBOX_NTOP];
    char link[SANDBOX_NTOP][128];      /* the target of a LINK */
};

struct sandbox_spec {
    const char *bwrap;                 /* borrowed: the bubblewrap program */
    const struct sandbox_host *host;   /* borrowed */
    const char *checkout;              /* borrowed: host folder, read-only */
    const char *scratch;               /* borrowed: host folder, writable */
    const char *output;                /* borrowed: host folder, writable */
    bool network;                      /* keep the host's network */
    long tmp_mb;                       /* size of /tmp in MiB */
    const char *ro_paths;              /* borrowed: extra read-only binds,
                                          comma-separated; NULL or "" none */
    const char *const *env;            /* borrowed: "K=V", NULL-terminated */
    const char *const *command;        /* borrowed: run inside, NULL-terminated */
};

/* The full command line (argv[0] is spec->bwrap), NULL-terminated and
 * owned by the caller (sandbox_argv_free).  NULL with a message in err on
 * a bad spec (a relative or odd extra path, an env entry without '=') or
 * when out of memory. */
char **sandbox_argv(const struct sandbox_spec *spec, char *err, size_t errlen);
void sandbox_argv_free(char **argv);

/* Fills h from the machine (lstat and readlink of the top folders). */
void sandbox_host_probe(struct sandbox_host *h);

#endif
