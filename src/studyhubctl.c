/* studyhubctl: sends one command to a running studyhub over its admin
 * Unix socket and prints the answer.  Exit status: 0 OK, 1 ERR from the
 * server, 2 cannot connect or the answer was cut off, 64 usage. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_DEFAULT_SOCKET "var/studyhub.sock"
#define CTL_MAX_LINE 4096 /* the server's limit on a command line */
#define CTL_EXIT_OK 0
#define CTL_EXIT_ERR 1
#define CTL_EXIT_CONNECT 2
#define CTL_EXIT_USAGE 64

static void ctl_usage(FILE *out)
{
    fprintf(out,
            "usage: studyhubctl [--socket PATH] COMMAND [ARGS...]\n"
            "       studyhubctl --help\n"
            "\n"
            "Sends COMMAND to a running studyhub over its admin socket and\n"
            "prints the answer.  `studyhubctl help` lists the commands.\n"
            "\n"
            "  -s, --socket PATH  admin socket (default: $ADMIN_SOCKET, or\n"
            "                     " CTL_DEFAULT_SOCKET ")\n"
            "  -h, --help         this text\n"
            "\n"
            "Exit status: 0 OK, 1 the command failed (message on stderr),\n"
            "2 cannot connect or the answer was cut off, 64 bad usage.\n"
            "studyhubctl " PACKAGE_VERSION "\n");
}

static int ctl_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Joins the words with spaces; the protocol has no quoting, so a word may
 * not hold a space, tab or line break.  Returns a malloc'd line or NULL. */
static char *ctl_build_line(int argc, char **argv)
{
    size_t len = 0;
    char *line;
    char *p;

    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '\0' || strpbrk(argv[i], " \t\r\n")) {
            fprintf(stderr,
                    "studyhubctl: arguments may not be empty or contain "
                    "spaces or line breaks: '%s'\n",
                    argv[i]);
            return NULL;
        }
        len += strlen(argv[i]) + 1;
    }
    if (len > CTL_MAX_LINE) {
        fprintf(stderr, "studyhubctl: command line too long (max %d bytes)\n",
                CTL_MAX_LINE);
        return NULL;
    }
    line = malloc(len + 1);
    if (line == NULL) {
        fprintf(stderr, "studyhubctl: out of memory\n");
        return NULL;
    }
    p = line;
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);

        memcpy(p, argv[i], n);
        p += n;
        *p++ = i + 1 < argc ? ' ' : '\n';
    }
    *p = '\0';
    return line;
}

static int ctl_connect(const char *path)
{
    struct sockaddr_un sun;
    int fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "studyhubctl: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "studyhubctl: socket: %s\n", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int err = errno;

        fprintf(stderr, "studyhubctl: cannot connect to %s: %s%s\n", path,
                strerror(err),
                err == ENOENT || err == ECONNREFUSED
                    ? " (is studyhub running? set --socket or ADMIN_SOCKET)"
                    : "");
        close(fd);
        return -1;
    }
    return fd;
}

/* Prints the answer.  The last line before the server closes is the
 * status, so output lines that happen to read "OK" are not mistaken for
 * it: each line is printed only once the next one has arrived. */
static int ctl_read_answer(int fd)
{
    FILE *in = fdopen(fd, "r");
    char *prev = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int ret = CTL_EXIT_CONNECT;

    errno = 0;
    if (in == NULL) {
        fprintf(stderr, "studyhubctl: %s\n", strerror(errno));
        close(fd);
        return CTL_EXIT_CONNECT;
    }
    while ((n = getline(&line, &cap, in)) >= 0) {
        if (n == 0 || line[n - 1] != '\n')
            break; /* cut off mid-line */
        line[n - 1] = '\0';
        if (prev) {
            puts(prev);
            free(prev);
        }
        prev = line;
        line = NULL;
        cap = 0;
    }
    /* A server that refuses us (too many clients) answers and closes
     * without reading our line: that is a reset after its answer, so it
     * counts as the end of the answer. */
    if (ferror(in) && errno != ECONNRESET) {
        fprintf(stderr, "studyhubctl: read: %s\n", strerror(errno));
        goto out;
    }
    if (n >= 0 || prev == NULL) {
        fprintf(stderr, "studyhubctl: connection closed before the answer "
                        "ended\n");
        goto out;
    }
    if (strcmp(prev, "OK") == 0) {
        ret = CTL_EXIT_OK;
    } else if (strncmp(prev, "ERR", 3) == 0 &&
               (prev[3] == ' ' || prev[3] == '\0')) {
        fflush(stdout);
        fprintf(stderr, "studyhubctl: %s\n",
                prev[3] ? prev + 4 : "command failed");
        ret = CTL_EXIT_ERR;
    } else {
        puts(prev);
        fflush(stdout);
        fprintf(stderr, "studyhubctl: the answer ended without OK or ERR "
                        "(server stopped?)\n");
    }
out:
    free(prev);
    free(line);
    fclose(in);
    return ret;
}

int main(int argc, char **argv)
{
    const char *path = getenv("ADMIN_SOCKET");
    char *line = NULL;
    int fd = -1;
    int ret = CTL_EXIT_USAGE;
    int i;

    if (path == NULL || path[0] == '\0')
        path = CTL_DEFAULT_SOCKET;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            ctl_usage(stdout);
            ret = CTL_EXIT_OK;
            goto out;
        } else if (strcmp(argv[i], "-s") == 0 ||
                   strcmp(argv[i], "--socket") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "studyhubctl: %s needs a path\n", argv[i]);
                goto out;
            }
            path = argv[++i];
        } else if (strncmp(argv[i], "--socket=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            fprintf(stderr, "studyhubctl: unknown option %s\n", argv[i]);
            ctl_usage(stderr);
            goto out;
        }
    }
    if (i >= argc) {
        ctl_usage(stderr);
        goto out;
    }
    line = ctl_build_line(argc - i, argv + i);
    if (line == NULL)
        goto out;
    /* A server that closes early must not kill us before we report it. */
    signal(SIGPIPE, SIG_IGN);
    ret = CTL_EXIT_CONNECT;
    fd = ctl_connect(path);
    if (fd < 0)
        goto out;
    /* EPIPE: the server answered and closed first (e.g. too many
     * clients); its answer is still there to read. */
    if (ctl_write_all(fd, line, strlen(line)) < 0 && errno != EPIPE) {
        fprintf(stderr, "studyhubctl: write to %s: %s\n", path,
                strerror(errno));
        goto out;
    }
    ret = ctl_read_answer(fd);
    fd = -1; /* closed by ctl_read_answer */
out:
    if (fd >= 0)
        close(fd);
    free(line);
    if (fflush(stdout) != 0 && ret == CTL_EXIT_OK)
        ret = CTL_EXIT_ERR; /* e.g. stdout is a full disk */
    return ret;
}
