/* Unit tests of task_queue's pure part: task references (an id or a
 * uuid, the two parameters of the task lookups). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/queue/task_queue.h"
#include "unit_main.h"

START_TEST(ids_and_uuids)
{
    char id[32], uuid[40];

    ck_assert_int_eq(task_parse_ref("123", id, sizeof id, uuid, sizeof uuid), 0);
    ck_assert_str_eq(id, "123");
    ck_assert_str_eq(uuid, "");
    ck_assert_int_eq(task_parse_ref("123456789012345678", id, sizeof id, uuid,
                                    sizeof uuid), 0);
    ck_assert_str_eq(id, "123456789012345678");

    ck_assert_int_eq(task_parse_ref("0f8fad5b-d9cb-469f-a165-70867728950E", id,
                                    sizeof id, uuid, sizeof uuid), 0);
    ck_assert_str_eq(id, "");
    ck_assert_str_eq(uuid, "0f8fad5b-d9cb-469f-a165-70867728950E");
}
END_TEST

START_TEST(neither)
{
    char id[32] = "x", uuid[40] = "x";
    static const char *const bad[] = {
        "",                                          /* empty */
        "1234567890123456789",                       /* 19 digits: past bigint's reach */
        "-1", "12a", " 12", "1e3",
        "0f8fad5b-d9cb-469f-a165-70867728950",        /* 35 */
        "0f8fad5b-d9cb-469f-a165-70867728950ee",      /* 37 */
        "0f8fad5bxd9cb-469f-a165-70867728950e",       /* a dash missing */
        "0f8fad5b-d9cb-469f-a165-70867728950g",       /* not hex */
        "0f8fad5b-d9cb-469f-a165-7086772895'e",       /* a quote */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(task_parse_ref(bad[i], id, sizeof id, uuid, sizeof uuid) == -1,
                      "accepted '%s'", bad[i]);
        ck_assert_str_eq(id, "");
        ck_assert_str_eq(uuid, "");
    }
}
END_TEST

static Suite *task_queue_suite(void)
{
    Suite *s = suite_create("task_queue");
    TCase *tc = tcase_create("refs");
    tcase_add_test(tc, ids_and_uuids);
    tcase_add_test(tc, neither);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(task_queue_suite());
}
