/* Unit tests of sitepages' input checks: what an edit of a public page
 * may carry, and the support form's fields and email text. */
#include "config.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/domain/sitepages.h"
#include "studyhub/http/jsonapi.h"
#include "unit_main.h"

static json_t *obj(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    return j;
}

START_TEST(edit_takes_title_and_body)
{
    struct jsonapi_error e;
    const char *title, *body;
    json_t *a = obj("{\"title\":\"FAQ\",\"body\":\"# Hi\\n\\n<script>x</script>\"}");

    /* Markup is only text here: the pages render with raw HTML off. */
    ck_assert_int_eq(sitepages_attrs_check(a, &title, &body, &e), 0);
    ck_assert_str_eq(title, "FAQ");
    ck_assert_str_eq(body, "# Hi\n\n<script>x</script>");
    json_decref(a);

    a = obj("{\"body\":\"\"}");
    ck_assert_int_eq(sitepages_attrs_check(a, &title, &body, &e), 0);
    ck_assert_ptr_null(title);
    ck_assert_str_eq(body, "");
    json_decref(a);
}
END_TEST

START_TEST(edit_refuses)
{
    static const char *bad[][2] = {
        { "{}", "/data/attributes" },
        { "{\"slug\":\"x\"}", "/data/attributes/slug" },
        { "{\"title\":\"\"}", "/data/attributes/title" },
        { "{\"title\":3}", "/data/attributes/title" },
        { "{\"title\":\"a\\nb\"}", "/data/attributes/title" },
        { "{\"body\":null}", "/data/attributes/body" },
        { "{\"body\":\"a\\u0001b\"}", "/data/attributes/body" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct jsonapi_error e;
        const char *title, *body;
        json_t *a = obj(bad[i][0]);
        ck_assert_int_eq(sitepages_attrs_check(a, &title, &body, &e), -1);
        ck_assert_int_eq(e.status, 400);
        ck_assert_str_eq(e.pointer, bad[i][1]);
        json_decref(a);
    }
    struct jsonapi_error e;
    const char *title, *body;
    ck_assert_int_eq(sitepages_attrs_check(NULL, &title, &body, &e), -1);

    /* Limits: 200 characters of title (not bytes), 100000 bytes of body. */
    char *big = malloc(SITEPAGES_BODY_MAX + 2);
    memset(big, 'a', SITEPAGES_BODY_MAX + 1);
    big[SITEPAGES_BODY_MAX + 1] = '\0';
    json_t *a = json_pack("{s:s}", "body", big);
    ck_assert_int_eq(sitepages_attrs_check(a, &title, &body, &e), -1);
    json_decref(a);
    big[SITEPAGES_BODY_MAX] = '\0';
    a = json_pack("{s:s}", "body", big);
    ck_assert_int_eq(sitepages_attrs_check(a, &title, &body, &e), 0);
    json_decref(a);
    free(big);
    char t[2 * SITEPAGES_TITLE_MAX + 3] = "";
    for (int i = 0; i < SITEPAGES_TITLE_MAX; i++)
        strcat(t, "\xc3\xa9");    /* é: two bytes, one character */
    a = json_pack("{s:s}", "title", t);
    ck_assert_int_eq(sitepages_attrs_check(a, &title, &body, &e), 0);
    json_decref(a);
    strcat(t, "x");
    a = json_pack("{s:s}", "title", t);
    ck_assert_int_eq(sitepages_attrs_check(a, &title, &body, &e), -1);
    json_decref(a);
}
END_TEST

START_TEST(support_fields)
{
    struct jsonapi_error e;
    struct sitepages_support m;
    json_t *f = obj("{\"email\":\"pat@example.org\",\"subject\":\"Login\","
                    "\"message\":\"I cannot log in.\\nHelp?\"}");

    ck_assert_int_eq(sitepages_support_check(f, &m, &e), 0);
    ck_assert_str_eq(m.name, "");
    ck_assert_str_eq(m.email, "pat@example.org");
    char *subject = sitepages_support_subject(&m), *body = sitepages_support_body(&m);
    ck_assert_str_eq(subject, "Support: Login");
    ck_assert_ptr_nonnull(strstr(body, "Email: pat@example.org\n"));
    ck_assert_ptr_nonnull(strstr(body, "(no name given)"));
    ck_assert_ptr_nonnull(strstr(body, "I cannot log in.\nHelp?"));
    free(subject);
    free(body);
    json_decref(f);
}
END_TEST

START_TEST(support_refuses)
{
    static const char *bad[][2] = {
        { "{\"subject\":\"s\",\"message\":\"m\"}", "/data/attributes/email" },
        { "{\"email\":\"nobody\",\"subject\":\"s\",\"message\":\"m\"}", "/data/attributes/email" },
        { "{\"email\":\"a@b\",\"subject\":\"s\",\"message\":\"m\"}", "/data/attributes/email" },
        { "{\"email\":\"a@b.org\\r\\nBcc: x@y.org\",\"subject\":\"s\",\"message\":\"m\"}",
          "/data/attributes/email" },
        { "{\"email\":\"a@b.org\",\"message\":\"m\"}", "/data/attributes/subject" },
        { "{\"email\":\"a@b.org\",\"subject\":\"s\\nBcc: x\",\"message\":\"m\"}",
          "/data/attributes/subject" },
        { "{\"email\":\"a@b.org\",\"subject\":\"s\",\"message\":\"\"}", "/data/attributes/message" },
        { "{\"email\":\"a@b.org\",\"subject\":\"s\",\"message\":7}", "/data/attributes/message" },
        { "{\"name\":[1],\"email\":\"a@b.org\",\"subject\":\"s\",\"message\":\"m\"}",
          "/data/attributes/name" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct jsonapi_error e;
        struct sitepages_support m;
        json_t *f = obj(bad[i][0]);
        ck_assert_int_eq(sitepages_support_check(f, &m, &e), -1);
        ck_assert_int_eq(e.status, 400);
        ck_assert_str_eq(e.pointer, bad[i][1]);
        json_decref(f);
    }
    /* The message's limit, in bytes. */
    char big[SITEPAGES_MESSAGE_MAX + 2];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_t *f = json_pack("{s:s, s:s, s:s}", "email", "a@b.org", "subject", "s", "message", big);
    struct jsonapi_error e;
    struct sitepages_support m;
    ck_assert_int_eq(sitepages_support_check(f, &m, &e), -1);
    ck_assert_str_eq(e.pointer, "/data/attributes/message");
    json_decref(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sitepages");
    TCase *tc = tcase_create("checks");

    tcase_add_test(tc, edit_takes_title_and_body);
    tcase_add_test(tc, edit_refuses);
    tcase_add_test(tc, support_fields);
    tcase_add_test(tc, support_refuses);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
