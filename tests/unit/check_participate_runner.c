/* Unit tests of participate_runner's pure parts: which build files are
 * fingerprinted (cached a year), and where the runner key goes in the
 * built index.html. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/participate_runner.h"
#include "unit_main.h"

#define CHILD "26edcab0-b578-49e4-9ef3-6f9e5ee32642"
#define STUDY "c39fc4e9-0084-4efb-9db1-ea596c946108"
#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char *inject(const char *html, bool preview, size_t *len)
{
    return participate_runner_inject(html, strlen(html), KEY, STUDY, CHILD, preview, len);
}

START_TEST(fingerprints)
{
    ck_assert(participate_runner_fingerprinted("assets/vendor-0123456789abcdef0123456789abcdef.js"));
    ck_assert(participate_runner_fingerprinted("frame-player-deadbeef.css"));
    ck_assert(participate_runner_fingerprinted("a/b/ember-lookit-1a2b3c4d5e.map"));
    ck_assert(!participate_runner_fingerprinted("assets/runner-1.js"));        /* too short */
    ck_assert(!participate_runner_fingerprinted("assets/vendor.js"));
    ck_assert(!participate_runner_fingerprinted("assets/vendor-DEADBEEF.js"));  /* not ember's hex */
    ck_assert(!participate_runner_fingerprinted("assets/-deadbeef.js"));       /* no name */
    ck_assert(!participate_runner_fingerprinted("assets-deadbeef0/vendor.js")); /* folder, not file */
    ck_assert(!participate_runner_fingerprinted("index.html"));
    ck_assert(!participate_runner_fingerprinted("deadbeef-cafebabe"));         /* no extension */
}
END_TEST

START_TEST(inject_places)
{
    size_t len;
    const char *meta0 = "<meta name=\"studyhub-runner\" content=\"" KEY " " STUDY " " CHILD " 0\">";
    const char *meta1 = "<meta name=\"studyhub-runner\" content=\"" KEY " " STUDY " " CHILD " 1\">";
    char want[512];

    char *out = inject("<html><head><title>x</title></head></html>", false, &len);
    snprintf(want, sizeof want, "<html><head>%s<title>x</title></head></html>", meta0);
    ck_assert_str_eq(out, want);
    free(out);

    /* No <head>: at the start.  <header> is not <head>. */
    out = inject("<header>hi</header>", true, &len);
    snprintf(want, sizeof want, "%s<header>hi</header>", meta1);
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(len, strlen(want));
    free(out);

    out = inject("", false, &len);
    ck_assert_str_eq(out, meta0);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("participate_runner");
    TCase *tc = tcase_create("participate_runner");
    tcase_add_test(tc, inject_places);
    tcase_add_test(tc, fingerprints);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
