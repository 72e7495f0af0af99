/* Unit tests of erase_storage: the text array literal that names the
 * batch's keys to forget (quotes, backslashes, commas, braces, empty). */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "studyhub/tasks/erase_storage.h"

START_TEST(text_array_quotes_every_key)
{
    char *keys[] = { "videoStream_a_b", "with,comma {brace}", "q\"uote", "back\\slash", "" };
    char *s = erase_storage_text_array(keys, 5);

    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "{\"videoStream_a_b\",\"with,comma {brace}\",\"q\\\"uote\","
                        "\"back\\\\slash\",\"\"}");
    free(s);
    s = erase_storage_text_array(keys, 0);
    ck_assert_str_eq(s, "{}");
    free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("erase_storage");
    TCase *tc = tcase_create("erase_storage");
    tcase_add_test(tc, text_array_quotes_every_key);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
