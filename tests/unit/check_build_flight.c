/* Unit tests of build_flight: a download counts only when the file ends
 * with a zip's end record, so a transfer cut short is retried, not
 * extracted; and with no flight under way a build waits on nothing. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "studyhub/tasks/build_internal.h"
#include "unit_main.h"

static char *write_file(const void *data, size_t len)
{
    char *path = strdup("/tmp/check_build_flight-XXXXXX");
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

START_TEST(zip_end_record)
{
    /* The smallest zip: an end record with no entries (22 bytes). */
    char empty[22] = { 'P', 'K', 5, 6 };
    /* A "zip" of 200 KiB whose end record sits after a long comment. */
    size_t big_len = 200 * 1024;
    char *big = calloc(1, big_len);
    memcpy(big + big_len - 22 - 1000, empty, 4);
    char *paths[4];

    paths[0] = write_file(empty, sizeof empty);
    paths[1] = write_file(big, big_len);
    paths[2] = write_file(big, big_len - 22 - 1000 + 3);   /* cut inside the record */
    paths[3] = write_file("PK\3\4 a local header and nothing else", 36);
    ck_assert(zip_has_end(paths[0]));
    ck_assert(zip_has_end(paths[1]));
    ck_assert(!zip_has_end(paths[2]));
    ck_assert(!zip_has_end(paths[3]));
    ck_assert(!zip_has_end("/nonexistent/archive.zip"));
    for (int i = 0; i < 4; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
    free(big);
}
END_TEST

START_TEST(no_flight_no_wait)
{
    static struct builder bld;
    struct build b = { 0 };

    TAILQ_INIT(&bld.flights);
    the_builder = &bld;
    ck_assert(!flight_wait(&b, FL_DOWNLOAD, "/var/checkouts/abc.zip"));
    ck_assert(!flight_wait(&b, FL_EXTRACT, "/var/checkouts/abc"));
    flights_free_all();
    ck_assert(TAILQ_EMPTY(&bld.flights));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("build_flight");
    TCase *tc = tcase_create("flight");

    tcase_add_test(tc, zip_end_record);
    tcase_add_test(tc, no_flight_no_wait);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
