/* Unit tests of static: content types, Accept-Encoding, loading a folder
 * (hidden files and symbolic links skipped, nothing outside reachable),
 * gzip copies that inflate back, versions stamped into pages, the vendor
 * folder immutable, and the size limits. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "studyhub/http/static.h"
#include "unit_main.h"

static char root[256];

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void make_tree(void)
{
    char path[512];
    snprintf(root, sizeof root, "/tmp/check_static.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    const char *dirs[] = { "js", "css", "vendor", "vendor/axe-core@4.10.2", "login" };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
        ck_assert_int_eq(mkdir(path, 0700), 0);
    }
    put("index.html", "<!doctype html><link rel=\"stylesheet\" href=\"/css/site.css\">"
                      "<script type=\"module\" src=\"/js/home.js\"></script>"
                      "<a href=\"/login/\">Log in</a><img src=\"/img/none.png\">");
    put("login/index.html", "<p>login</p>");
    put("css/site.css", "body { margin: 0 }\n");
    char big[4096];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put("js/home.js", big);
    put("js/.secret", "hidden");
    put("vendor/axe-core@4.10.2/axe.min.js", "var axe;");
    snprintf(path, sizeof path, "%s/js/passwd.js", root);
    ck_assert_int_eq(symlink("/etc/passwd", path), 0);
}

static void rm_tree(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(content_types)
{
    ck_assert_str_eq(static_content_type("/a/b.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(static_content_type("x.JS"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(static_content_type("x.css"), "text/css; charset=utf-8");
    ck_assert_str_eq(static_content_type("x.svg"), "image/svg+xml");
    ck_assert_str_eq(static_content_type("x.png"), "image/png");
    ck_assert_str_eq(static_content_type("x.woff2"), "font/woff2");
    ck_assert_str_eq(static_content_type("/dir.d/noext"), "application/octet-stream");
    ck_assert_str_eq(static_content_type("x.exe"), "application/octet-stream");
}
END_TEST

START_TEST(accept_encoding)
{
    ck_assert(static_accepts_gzip("gzip"));
    ck_assert(static_accepts_gzip("br, gzip, deflate"));
    ck_assert(static_accepts_gzip("deflate, gzip;q=0.5"));
    ck_assert(static_accepts_gzip("*"));
    ck_assert(!static_accepts_gzip("gzip;q=0"));
    ck_assert(!static_accepts_gzip("br, gzip; q=0.0"));
    ck_assert(!static_accepts_gzip("deflate, br"));
    ck_assert(!static_accepts_gzip("xgzip"));
    ck_assert(!static_accepts_gzip(""));
    ck_assert(!static_accepts_gzip(NULL));
}
END_TEST

START_TEST(load_and_find)
{
    char err[256] = "";
    make_tree();
    struct static_site *s = static_site_load(root, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    /* index, login, css, js, vendor: not the dot file, not the link. */
    ck_assert_uint_eq(static_site_count(s), 5);
    ck_assert_ptr_null(static_site_find(s, "/js/.secret"));
    ck_assert_ptr_null(static_site_find(s, "/js/passwd.js"));
    ck_assert_ptr_null(static_site_find(s, "/js/../index.html"));
    ck_assert_ptr_null(static_site_find(s, "js/home.js"));

    const struct static_file *js = static_site_find(s, "/js/home.js");
    ck_assert_ptr_nonnull(js);
    ck_assert_str_eq(js->type, "text/javascript; charset=utf-8");
    ck_assert(!js->immutable);
    ck_assert_uint_eq(strlen(js->etag), 18);
    ck_assert_int_eq(js->etag[0], '"');
    ck_assert_int_eq(strncmp(js->etag + 1, js->version, 8), 0);
    ck_assert_int_eq(strncmp(js->gz_etag, js->etag, 17), 0);
    ck_assert_str_eq(js->gz_etag + 17, "-gz\"");

    /* The gzip copy is smaller and inflates back to the file. */
    ck_assert_ptr_nonnull(js->gz);
    ck_assert(js->gz_len < js->len);
    unsigned char back[8192];
    z_stream zs = { 0 };
    ck_assert_int_eq(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = js->gz;
    zs.avail_in = (uInt)js->gz_len;
    zs.next_out = back;
    zs.avail_out = sizeof back;
    ck_assert_int_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
    ck_assert_uint_eq(zs.total_out, js->len);
    ck_assert_int_eq(memcmp(back, js->data, js->len), 0);
    inflateEnd(&zs);

    /* Too small to be worth it: no gzip copy. */
    const struct static_file *css = static_site_find(s, "/css/site.css");
    ck_assert_ptr_null(css->gz);

    const struct static_file *axe = static_site_find(s, "/vendor/axe-core@4.10.2/axe.min.js");
    ck_assert_ptr_nonnull(axe);
    ck_assert(axe->immutable);
    static_site_free(s);
    rm_tree();
}
END_TEST

START_TEST(pages_carry_versions)
{
    char err[256] = "", want[128];
    make_tree();
    struct static_site *s = static_site_load(root, err, sizeof err);
    ck_assert_ptr_nonnull(s);
    const struct static_file *page = static_site_find(s, "/index.html");
    const struct static_file *css = static_site_find(s, "/css/site.css");
    const struct static_file *js = static_site_find(s, "/js/home.js");
    char *text = strndup((const char *)page->data, page->len);

    snprintf(want, sizeof want, "href=\"/css/site.css?v=%s\"", css->version);
    ck_assert_msg(strstr(text, want), "%s", text);
    snprintf(want, sizeof want, "src=\"/js/home.js?v=%s\"", js->version);
    ck_assert_msg(strstr(text, want), "%s", text);
    /* Pages and missing files are left as they are. */
    ck_assert(strstr(text, "href=\"/login/\""));
    ck_assert(strstr(text, "src=\"/img/none.png\""));
    free(text);
    static_site_free(s);
    rm_tree();
}
END_TEST

START_TEST(missing_folder_is_empty)
{
    char err[256] = "";
    struct static_site *s = static_site_load("/nonexistent/static", err, sizeof err);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(static_site_count(s), 0);
    ck_assert_ptr_null(static_site_find(s, "/index.html"));
    static_site_free(s);
}
END_TEST

START_TEST(over_the_limit_is_an_error)
{
    char err[256] = "", path[512];
    make_tree();
    snprintf(path, sizeof path, "%s/js/huge.js", root);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ftruncate(fileno(f), (off_t)STATIC_MAX_FILE_BYTES + 1), 0);
    fclose(f);
    struct static_site *s = static_site_load(root, err, sizeof err);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, "huge.js") && strstr(err, "limits"), "%s", err);
    rm_tree();
}
END_TEST

/* A page's "<!--#include NAME-->" is the partial's bytes, stamped like
 * the rest of the page; a missing or malformed partial stops the load. */
START_TEST(partials_are_included)
{
    char err[256] = "", path[512], want[128];
    make_tree();
    snprintf(path, sizeof path, "%s/_partials", root);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    put("_partials/nav.html", "<nav><a href=\"/css/site.css\">x</a></nav>");
    put("login/index.html", "<body><!--#include nav--><p>login</p><!--#include nav--></body>");
    struct static_site *s = static_site_load(root, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    const struct static_file *page = static_site_find(s, "/login/index.html");
    const struct static_file *css = static_site_find(s, "/css/site.css");
    char *text = strndup((const char *)page->data, page->len);
    snprintf(want, sizeof want, "<body><nav><a href=\"/css/site.css?v=%s\">x</a></nav><p>login</p>",
             css->version);
    ck_assert_msg(strncmp(text, want, strlen(want)) == 0, "%s", text);
    ck_assert_ptr_null(strstr(text, "#include"));
    free(text);
    static_site_free(s);

    put("login/index.html", "<!--#include nothere-->");
    ck_assert_ptr_null(static_site_load(root, err, sizeof err));
    ck_assert_msg(strstr(err, "/_partials/nothere.html"), "%s", err);
    put("login/index.html", "<!--#include ../../etc/passwd-->");
    ck_assert_ptr_null(static_site_load(root, err, sizeof err));
    ck_assert_msg(strstr(err, "malformed"), "%s", err);
    rm_tree();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("static");
    TCase *tc = tcase_create("static");
    tcase_add_test(tc, content_types);
    tcase_add_test(tc, accept_encoding);
    tcase_add_test(tc, load_and_find);
    tcase_add_test(tc, pages_carry_versions);
    tcase_add_test(tc, missing_folder_is_empty);
    tcase_add_test(tc, over_the_limit_is_an_error);
    tcase_add_test(tc, partials_are_included);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
