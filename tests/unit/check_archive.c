/* Unit tests of archive: the safe extractor against zips written byte by
 * byte here (so any type, mode, name or size can be put in an entry, which
 * libarchive's own writer refuses to do), the tree remover, and the
 * asynchronous job (this test binary is its own extraction child: main
 * dispatches ARCHIVE_CHILD_FLAG like studyhub's does). */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studyhub/io/archive.h"
#include "studyhub/io/proc.h"
#include "unit_loop.h"
#include "unit_main.h"

/* ---- a tiny zip writer (stored entries, unix modes) ------------------- */

struct zentry {
    const char *name;
    unsigned mode;        /* full st_mode: type and permission bits */
    const char *data;     /* file content or link target */
    size_t len;
    long declared;        /* uncompressed size written in the headers; -1: len */
};

static uint32_t crc32_of(const char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;

    for (size_t i = 0; i < n; i++) {
        c ^= (unsigned char)p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (uint32_t)-(int32_t)(c & 1));
    }
    return ~c;
}

static void put16(FILE *f, unsigned v)
{
    fputc((int)(v & 0xff), f);
    fputc((int)((v >> 8) & 0xff), f);
}

static void put32(FILE *f, uint32_t v)
{
    put16(f, v & 0xffff);
    put16(f, v >> 16);
}

static char tmp_root[64];

static void make_root(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/check_archive-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_root));
}

static void drop_root(void)
{
    archive_remove_tree(tmp_root);
}

static char *path_in(const char *rel)
{
    static char bufs[4][PATH_MAX];
    static int k;
    char *b = bufs[k++ % 4];

    snprintf(b, PATH_MAX, "%.63s/%.3000s", tmp_root, rel);
    return b;
}

static const char *write_zip(const char *file, const struct zentry *e, int n)
{
    const char *path = path_in(file);
    FILE *f = fopen(path, "wb");
    long offsets[64];
    long cd;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_le(n, 64);
    for (int i = 0; i < n; i++) {
        uint32_t size = e[i].declared >= 0 ? (uint32_t)e[i].declared : (uint32_t)e[i].len;
        offsets[i] = ftell(f);
        put32(f, 0x04034b50);
        put16(f, 20);
        put16(f, 0);                    /* flags */
        put16(f, 0);                    /* stored */
        put16(f, 0);                    /* time */
        put16(f, 0x21);                 /* 1980-01-01 */
        put32(f, crc32_of(e[i].data, e[i].len));
        put32(f, size);
        put32(f, size);
        put16(f, (unsigned)strlen(e[i].name));
        put16(f, 0);
        fwrite(e[i].name, 1, strlen(e[i].name), f);
        fwrite(e[i].data, 1, e[i].len, f);
    }
    cd = ftell(f);
    for (int i = 0; i < n; i++) {
        uint32_t size = e[i].declared >= 0 ? (uint32_t)e[i].declared : (uint32_t)e[i].len;
        put32(f, 0x02014b50);
        put16(f, (3 << 8) | 20);        /* made by unix: modes are read */
        put16(f, 20);
        put16(f, 0);
        put16(f, 0);
        put16(f, 0);
        put16(f, 0x21);
        put32(f, crc32_of(e[i].data, e[i].len));
        put32(f, size);
        put32(f, size);
        put16(f, (unsigned)strlen(e[i].name));
        put16(f, 0);
        put16(f, 0);
        put16(f, 0);
        put16(f, 0);
        put32(f, (uint32_t)e[i].mode << 16);
        put32(f, (uint32_t)offsets[i]);
        fwrite(e[i].name, 1, strlen(e[i].name), f);
    }
    {
        long end = ftell(f);
        put32(f, 0x06054b50);
        put16(f, 0);
        put16(f, 0);
        put16(f, (unsigned)n);
        put16(f, (unsigned)n);
        put32(f, (uint32_t)(end - cd));
        put32(f, (uint32_t)cd);
        put16(f, 0);
    }
    fclose(f);
    return path;
}

#define FILE_(n, d) { n, S_IFREG | 0644, d, sizeof d - 1, -1 }
#define EXEC_(n, d) { n, S_IFREG | 0755, d, sizeof d - 1, -1 }
#define DIR_(n) { n, S_IFDIR | 0755, "", 0, -1 }
#define LINK_(n, t) { n, S_IFLNK | 0777, t, sizeof t - 1, -1 }

static const struct archive_limits big = { .max_bytes = 1 << 20, .max_files = 1000 };

/* Extracts; returns the result and leaves the message in err. */
static int extract(const char *zip, const char *dest, const struct archive_limits *lim,
                   struct archive_stats *st, char *err, size_t n)
{
    err[0] = '\0';
    return archive_extract_sync(zip, path_in(dest), lim ? lim : &big, st, err, n);
}

static void assert_refused(const struct zentry *e, int n, const char *why)
{
    char err[512];
    const char *zip = write_zip("bad.zip", e, n);

    ck_assert_int_eq(extract(zip, "out", NULL, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, why), "expected \"%s\" in \"%s\"", why, err);
    /* Nothing left behind. */
    ck_assert_int_eq(access(path_in("out"), F_OK), -1);
}

/* ---- the extractor ------------------------------------------------------- */

START_TEST(extracts_a_tree)
{
    struct zentry e[] = {
        DIR_("repo-abc/"),
        EXEC_("repo-abc/build.sh", "#!/bin/sh\necho hi\n"),
        DIR_("repo-abc/app/"),
        FILE_("repo-abc/app/index.html", "<html></html>"),
        FILE_("repo-abc/deep/er/file.txt", "implicit folders"),
        LINK_("repo-abc/link-to-app", "app"),
        LINK_("repo-abc/app/self", "index.html"),
        FILE_("./repo-abc/dot/x", "a leading ./ is fine"),
    };
    struct archive_stats st;
    struct stat sb;
    char err[512], target[64];
    ssize_t n;

    ck_assert_int_eq(extract(write_zip("ok.zip", e, 8), "out", NULL, &st, err, sizeof err), 0);
    ck_assert_uint_eq(st.files, 4);
    ck_assert_uint_eq(st.links, 2);
    ck_assert_int_eq(stat(path_in("out/repo-abc/build.sh"), &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0755);
    ck_assert_int_eq(stat(path_in("out/repo-abc/app/index.html"), &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0644);
    ck_assert_int_eq(sb.st_size, 13);
    ck_assert_int_eq(stat(path_in("out/repo-abc/deep/er/file.txt"), &sb), 0);
    n = readlink(path_in("out/repo-abc/link-to-app"), target, sizeof target - 1);
    ck_assert_int_eq(n, 3);
    target[n] = '\0';
    ck_assert_str_eq(target, "app");
    ck_assert_int_eq(access(path_in("out/repo-abc/dot/x"), F_OK), 0);
}
END_TEST

START_TEST(refuses_escaping_names)
{
    struct zentry dotdot[] = { FILE_("a/../../evil", "x") };
    struct zentry abs[] = { FILE_("/tmp/check-archive-abs", "x") };
    /* libarchive reads DOS separators as '/': "a\..\..\evil" is a '..'. */
    struct zentry back[] = { FILE_("a\\..\\..\\evil", "x") };
    struct zentry empty[] = { FILE_("", "x") };

    assert_refused(dotdot, 1, "'..' component");
    assert_refused(abs, 1, "absolute path");
    ck_assert_int_eq(access("/tmp/check-archive-abs", F_OK), -1);
    assert_refused(back, 1, "'..' component");
    assert_refused(empty, 1, "empty name");
}
END_TEST

START_TEST(refuses_links_that_leave)
{
    struct zentry up[] = { FILE_("a/ok", "x"), LINK_("a/out", "../../etc") };
    struct zentry abs[] = { LINK_("a/out", "/etc/passwd") };
    struct zentry mid[] = { LINK_("a/out", "b/../../x") };

    assert_refused(up, 2, "points outside the folder");
    assert_refused(abs, 1, "points outside the folder");
    assert_refused(mid, 1, "points outside the folder");
}
END_TEST

START_TEST(never_writes_through_a_link)
{
    /* The link comes first in the archive, the file "under" it after: the
     * file makes a real folder and the link cannot be created. */
    struct zentry e[] = { LINK_("a/link", "sub"), DIR_("a/sub/"), FILE_("a/link/f", "x") };

    assert_refused(e, 3, "cannot create link");
}
END_TEST

/* A FIFO, device or socket never appears: refused, or (libarchive's zip
 * reader turns unknown types into plain files) an empty regular file. */
static void assert_not_special(const struct zentry *e, const char *rel)
{
    char err[512];
    struct stat sb;

    if (extract(write_zip("special.zip", e, 1), "out", NULL, NULL, err, sizeof err) < 0) {
        ck_assert_msg(strstr(err, "device, FIFO or socket"), "%s", err);
        return;
    }
    ck_assert_int_eq(lstat(path_in(rel), &sb), 0);
    ck_assert(S_ISREG(sb.st_mode));
    ck_assert_uint_eq(sb.st_mode & 07777, 0644);
    archive_remove_tree(path_in("out"));
}

START_TEST(refuses_special_files)
{
    struct zentry fifo[] = { { "a/fifo", S_IFIFO | 0644, "", 0, -1 } };
    struct zentry chr[] = { { "a/null", S_IFCHR | 0666, "", 0, -1 } };
    struct zentry blk[] = { { "a/sda", S_IFBLK | 0666, "", 0, -1 } };
    struct zentry sock[] = { { "a/sock", S_IFSOCK | 0666, "", 0, -1 } };

    assert_not_special(fifo, "out/a/fifo");
    assert_not_special(chr, "out/a/null");
    assert_not_special(blk, "out/a/sda");
    assert_not_special(sock, "out/a/sock");
}
END_TEST

START_TEST(drops_setuid_bits)
{
    struct zentry e[] = { { "a/suid", S_IFREG | 06755, "x", 1, -1 },
                          { "a/sticky", S_IFREG | 01644, "y", 1, -1 } };
    struct stat sb;
    char err[512];

    ck_assert_int_eq(extract(write_zip("suid.zip", e, 2), "out", NULL, NULL, err, sizeof err), 0);
    ck_assert_int_eq(stat(path_in("out/a/suid"), &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0755);
    ck_assert_int_eq(stat(path_in("out/a/sticky"), &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0644);
}
END_TEST

START_TEST(refuses_duplicates)
{
    struct zentry twice[] = { FILE_("a/x", "first"), FILE_("a/x", "second") };
    struct zentry spelled[] = { FILE_("a/x", "first"), FILE_("./a//x", "second") };
    struct zentry kinds[] = { DIR_("a/x/"), FILE_("a/x", "file") };

    assert_refused(twice, 2, "appears twice");
    assert_refused(spelled, 2, "appears twice");
    assert_refused(kinds, 2, "appears twice");
}
END_TEST

START_TEST(limits_are_running_totals)
{
    static const char kb[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    struct zentry three[] = { { "a/1", S_IFREG | 0644, kb, 128, -1 },
                              { "a/2", S_IFREG | 0644, kb, 128, -1 },
                              { "a/3", S_IFREG | 0644, kb, 128, -1 } };
    struct archive_limits bytes = { .max_bytes = 300, .max_files = 100 };
    struct archive_limits files = { .max_bytes = 1 << 20, .max_files = 2 };
    char err[512];
    const char *zip = write_zip("lim.zip", three, 3);

    /* Each file is under the limit; together they are not. */
    ck_assert_int_eq(extract(zip, "out", &bytes, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "300 bytes"), "%s", err);
    ck_assert_int_eq(access(path_in("out"), F_OK), -1);
    ck_assert_int_eq(extract(zip, "out", &files, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "more than 2 entries"), "%s", err);
    ck_assert_int_eq(access(path_in("out"), F_OK), -1);
}
END_TEST

START_TEST(refuses_corrupt_archives)
{
    struct zentry e[] = { FILE_("a/x", "some content here") };
    const char *zip = write_zip("c.zip", e, 1);
    char err[512];
    FILE *f;

    /* A wrong CRC. */
    f = fopen(zip, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, 30 + 3, SEEK_SET);
    fputc('X', f);
    fclose(f);
    ck_assert_int_eq(extract(zip, "out", NULL, NULL, err, sizeof err), -1);
    ck_assert_int_eq(access(path_in("out"), F_OK), -1);
    /* Not a zip at all. */
    f = fopen(path_in("junk.zip"), "wb");
    fputs("this is not a zip archive", f);
    fclose(f);
    ck_assert_int_eq(extract(path_in("junk.zip"), "out", NULL, NULL, err, sizeof err), -1);
    /* The destination must not exist. */
    ck_assert_int_eq(mkdir(path_in("exists"), 0755), 0);
    ck_assert_int_eq(extract(write_zip("ok.zip", e, 1), "exists", NULL, NULL, err, sizeof err), -1);
}
END_TEST

START_TEST(remove_tree_does_not_follow_links)
{
    FILE *f;

    ck_assert_int_eq(mkdir(path_in("outside"), 0755), 0);
    f = fopen(path_in("outside/keep"), "w");
    fclose(f);
    ck_assert_int_eq(mkdir(path_in("tree"), 0755), 0);
    ck_assert_int_eq(mkdir(path_in("tree/sub"), 0755), 0);
    ck_assert_int_eq(symlink(path_in("outside"), path_in("tree/sub/link")), 0);
    ck_assert_int_eq(archive_remove_tree(path_in("tree")), 0);
    ck_assert_int_eq(access(path_in("tree"), F_OK), -1);
    ck_assert_int_eq(access(path_in("outside/keep"), F_OK), 0);
}
END_TEST

/* ---- the asynchronous job (a real child) ------------------------------------ */

struct job_result {
    int calls, err;
    bool reused;
    char msg[512];
    struct archive_stats st;
    struct event_base *base;
};

static void on_done(int err, const char *msg, bool reused, const struct archive_stats *st,
                    void *arg)
{
    struct job_result *r = arg;

    r->calls++;
    r->err = err;
    r->reused = reused;
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
    r->st = *st;
    event_base_loopbreak(r->base);
}

static char self_exe[PATH_MAX];

static void run_job_top(const char *zip, const char *final, const char *top,
                        struct job_result *r)
{
    struct event_base *base = event_base_new();
    struct proc_table *pt = proc_table_new(base);
    char err[256];

    memset(r, 0, sizeof *r);
    r->base = base;
    ck_assert_ptr_nonnull(archive_extract_start(pt, self_exe, zip, final, top, &big, 10000,
                                                on_done, r, err, sizeof err));
    event_base_dispatch(base);
    /* Let the `rm -rf` of a discarded temporary folder finish. */
    for (int i = 0; i < 100 && proc_table_count(pt) > 0; i++) {
        struct timeval tv = { 0, 20000 };
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    proc_table_free(pt);
    unit_loop_free(base);
}

static void run_job(const char *zip, const char *final, struct job_result *r)
{
    run_job_top(zip, final, NULL, r);
}

START_TEST(job_refuses_another_top_folder)
{
    struct zentry e[] = { DIR_("other-abc/"), FILE_("other-abc/build.sh", "x") };
    struct zentry two[] = { DIR_("Repo-abc/"), FILE_("Repo-abc/x", "x"), FILE_("stray", "y") };
    struct job_result r;
    char zip[PATH_MAX];

    ck_assert_int_eq(mkdir(path_in("checkouts"), 0755), 0);
    snprintf(zip, sizeof zip, "%s", write_zip("other.zip", e, 2));
    run_job_top(zip, path_in("checkouts/abc"), "repo-abc", &r);
    ck_assert_int_eq(r.err, -1);
    ck_assert_msg(strstr(r.msg, "top folder is other-abc/, not repo-abc/"), "%s", r.msg);
    ck_assert_int_eq(access(path_in("checkouts/abc"), F_OK), -1);
    snprintf(zip, sizeof zip, "%s", write_zip("two.zip", two, 3));
    run_job_top(zip, path_in("checkouts/abc"), "repo-abc", &r);
    ck_assert_int_eq(r.err, -1);
    ck_assert_msg(strstr(r.msg, "does not hold one top folder repo-abc/"), "%s", r.msg);
    ck_assert_int_eq(access(path_in("checkouts/abc"), F_OK), -1);
    /* The repository's name as GitHub spells it, whatever the URL's case;
     * the commit must match exactly. */
    snprintf(zip, sizeof zip, "%s", write_zip("case.zip", two, 2));
    run_job_top(zip, path_in("checkouts/abc"), "repo-abc", &r);
    ck_assert_msg(r.err == 0, "job failed: %s", r.msg);
    ck_assert_int_eq(access(path_in("checkouts/abc/x"), F_OK), 0);
    run_job_top(zip, path_in("checkouts/abd"), "repo-abd", &r);
    ck_assert_int_eq(r.err, -1);
}
END_TEST

START_TEST(job_strips_the_top_folder_and_renames_into_place)
{
    struct zentry e[] = { DIR_("repo-abc/"), FILE_("repo-abc/x", "x"), FILE_("repo-abc/y/z", "z") };
    struct job_result r;
    char zip[PATH_MAX];

    snprintf(zip, sizeof zip, "%s", write_zip("job.zip", e, 3));

    run_job(zip, path_in("checkouts/abc"), &r);
    /* The parent folder is missing: the child cannot create its temp. */
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.err, -1);
    ck_assert_int_eq(mkdir(path_in("checkouts"), 0755), 0);
    run_job(zip, path_in("checkouts/abc"), &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_msg(r.err == 0, "job failed: %s", r.msg);
    ck_assert_uint_eq(r.st.files, 2);
    ck_assert_int_eq(access(path_in("checkouts/abc/x"), F_OK), 0);
    ck_assert_int_eq(access(path_in("checkouts/abc/y/z"), F_OK), 0);
    /* Again: the destination is there; the new copy is discarded. */
    run_job(zip, path_in("checkouts/abc"), &r);
    ck_assert_msg(r.err == 0, "job failed: %s", r.msg);
    ck_assert(r.reused);
    {
        int left = 0;
        char cmd[PATH_MAX + 64];
        FILE *p;
        snprintf(cmd, sizeof cmd, "ls -a %s | grep -c '^\\.tmp-' || true", path_in("checkouts"));
        p = popen(cmd, "r");
        ck_assert_int_eq(fscanf(p, "%d", &left), 1);
        pclose(p);
        ck_assert_int_eq(left, 0);
    }
}
END_TEST

START_TEST(job_reports_a_refusal)
{
    struct zentry e[] = { FILE_("repo/../../x", "x") };
    struct job_result r;

    ck_assert_int_eq(mkdir(path_in("checkouts"), 0755), 0);
    run_job(write_zip("evil.zip", e, 1), path_in("checkouts/evil"), &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.err, -1);
    ck_assert_msg(strstr(r.msg, "'..' component"), "%s", r.msg);
    ck_assert_int_eq(access(path_in("checkouts/evil"), F_OK), -1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("archive");
    TCase *tc = tcase_create("extract");

    tcase_add_checked_fixture(tc, make_root, drop_root);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, extracts_a_tree);
    tcase_add_test(tc, refuses_escaping_names);
    tcase_add_test(tc, job_refuses_another_top_folder);
    tcase_add_test(tc, refuses_links_that_leave);
    tcase_add_test(tc, never_writes_through_a_link);
    tcase_add_test(tc, refuses_special_files);
    tcase_add_test(tc, drops_setuid_bits);
    tcase_add_test(tc, refuses_duplicates);
    tcase_add_test(tc, limits_are_running_totals);
    tcase_add_test(tc, refuses_corrupt_archives);
    tcase_add_test(tc, remove_tree_does_not_follow_links);
    tcase_add_test(tc, job_strips_the_top_folder_and_renames_into_place);
    tcase_add_test(tc, job_reports_a_refusal);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{

    /* The job's child is this binary, as it is studyhub for the server. */
    if (argc > 1 && strcmp(argv[1], ARCHIVE_CHILD_FLAG) == 0)
        return archive_child_main(argc, argv);
    if (!realpath("/proc/self/exe", self_exe))
        return EXIT_FAILURE;
    return unit_run(suite());
}
