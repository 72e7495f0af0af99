/* Unit tests of build_upload: the prefixes an upload writes to (the shared
 * runner cache, then the study's deploy or preview folder), and the order
 * of publishing, with every index.html last. */
#include <check.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/tasks/build_internal.h"
#include "unit_loop.h"
#include "unit_main.h"

START_TEST(index_html_last)
{
    struct upfile files[] = {
        { "index.html", 10, NULL }, { "assets/app.js", 10, NULL },
        { "deep/index.html", 10, NULL }, { "assets/index.html.map", 10, NULL },
        { "robots.txt", 10, NULL },
    };
    size_t order[5];

    up_publish_order(files, 5, order);
    ck_assert_uint_eq(order[0], 1);
    ck_assert_uint_eq(order[1], 3);   /* not an index.html: only the name counts */
    ck_assert_uint_eq(order[2], 4);
    ck_assert_uint_eq(order[3], 0);
    ck_assert_uint_eq(order[4], 2);
}
END_TEST

START_TEST(prefixes)
{
    static struct config cfg;
    static struct app app;
    static struct builder bld;
    struct build b = { 0 };
    struct upload *up;

    cfg.build_upload_concurrency = 4;
    app.cfg = &cfg;
    app.base = event_base_new();
    bld.app = &app;
    the_builder = &bld;
    strcpy(b.study_uuid, "d3b5c0de-5eed-4a11-9e10-5757d1e5ba5e");
    strcpy(b.cache_key, "ab12");
    b.deploy = true;
    up = up_new(&b);
    ck_assert_ptr_nonnull(up);
    /* Deploy or preview, this study or another: one folder per runner. */
    ck_assert_str_eq(up->cache_prefix, "runners/ab12/");
    ck_assert_int_eq(up->nslots, 4);
    up_free(up);
    b.deploy = false;
    strcpy(b.study_uuid, "0d3b5c0d-5eed-4a11-9e10-5757d1e5ba5e");
    up = up_new(&b);
    ck_assert_str_eq(up->cache_prefix, "runners/ab12/");
    up_free(up);
    /* Nothing is left on the loop: every timer went with its upload. */
    ck_assert_int_eq(event_base_get_num_events(app.base, EVENT_BASE_COUNT_ADDED), 0);
    unit_loop_free(app.base);
}
END_TEST

/* The smoke check's reading of index.html. */
struct refs {
    char got[8][64];
    int n;
};

static void take_ref(const char *rel, size_t n, void *arg)
{
    struct refs *r = arg;

    if (r->n < 8)
        snprintf(r->got[r->n++], sizeof r->got[0], "%.*s", (int)n, rel);
}

START_TEST(index_refs)
{
    static const char html[] =
        "<!DOCTYPE html><link rel=\"stylesheet\" href=\"/runners/k1/assets/a.css\">"
        "<IMG SRC='/runners/k1/img/logo.png?v=2' alt=''>"
        "<script src=\"/runners/k1/assets/a.js#x\"></script>"
        "<a href=\"/studies/history/\">elsewhere</a>"      /* not under the prefix */
        "<img data-src=\"/runners/k1/lazy.png\">"            /* not an src= */
        "<img src=\"/runners/k1/\">"                         /* the prefix alone */
        "<img src=\"/runners/k2/other.png\">"                /* another runner */
        "<script src=\"/runners/k1/unterminated.js";
    struct refs r = { .n = 0 };

    ck_assert_uint_eq(up_index_refs(html, sizeof html - 1, "/runners/k1/", take_ref, &r), 3);
    ck_assert_str_eq(r.got[0], "assets/a.css");
    ck_assert_str_eq(r.got[1], "img/logo.png");
    ck_assert_str_eq(r.got[2], "assets/a.js");
    r.n = 0;
    ck_assert_uint_eq(up_index_refs("", 0, "/runners/k1/", take_ref, &r), 0);
    ck_assert_uint_eq(up_index_refs("src=", 4, "/runners/k1/", take_ref, &r), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("build_upload");
    TCase *tc = tcase_create("upload");

    tcase_add_test(tc, index_html_last);
    tcase_add_test(tc, prefixes);
    tcase_add_test(tc, index_refs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
