/* Unit tests of build_resolve's pure parts: which runner repository URLs
 * a build accepts (and GitHub's owner and name in them), and the runner's
 * cache key, which names its shared folder runners/<key>/ and must stay
 * the same for the same repository, commit and environment. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/tasks/build_internal.h"
#include "unit_main.h"

#define SHA "0123456789abcdef0123456789abcdef01234567"

START_TEST(parses_a_repository)
{
    static const struct {
        const char *url, *base, *owner, *repo;
    } ok[] = {
        { "https://github.com/lookit/ember-lookit-frameplayer",
          "https://github.com/lookit/ember-lookit-frameplayer", "lookit",
          "ember-lookit-frameplayer" },
        { "https://github.com/lookit/ember-lookit-frameplayer.git/",
          "https://github.com/lookit/ember-lookit-frameplayer", "lookit",
          "ember-lookit-frameplayer" },
        { "http://git.example/a_b/c.d//", "http://git.example/a_b/c.d", "a_b", "c.d" },
        { "https://github.com/o/r.git", "https://github.com/o/r", "o", "r" },
    };

    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char owner[128] = "", repo[128] = "", *base = NULL;
        ck_assert_msg(build_parse_repo(ok[i].url, &base, owner, repo) == 0, "%s", ok[i].url);
        ck_assert_str_eq(base, ok[i].base);
        ck_assert_str_eq(owner, ok[i].owner);
        ck_assert_str_eq(repo, ok[i].repo);
        free(base);
    }
}
END_TEST

START_TEST(refuses_what_is_not_one)
{
    static const char *const bad[] = {
        "git@github.com:lookit/frameplayer.git",            /* not http(s) */
        "ftp://github.com/lookit/frameplayer",
        "https://github.com/lookit",                        /* no owner */
        "https://github.com/",
        "https://github.com/lookit/",
        "https://github.com/lookit/frame player",           /* space */
        "https://github.com/lookit/frameplayer?x=1",        /* query */
        "https://github.com/lookit/frameplayer#main",
        "https://github.com/lo\"okit/frameplayer",
        "https://github.com/lookit/frame%20player",         /* '%' in the name */
        "https://github.com/look:it/frameplayer",           /* ':' in the owner */
        "https:///frameplayer",
        "",
    };

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char owner[128], repo[128], *base = NULL;
        ck_assert_msg(build_parse_repo(bad[i], &base, owner, repo) < 0, "%s", bad[i]);
        ck_assert_ptr_null(base);
    }
    /* Longer than 1000 characters. */
    char *longer = malloc(1100), owner[128], repo[128], *base = NULL;
    ck_assert_ptr_nonnull(longer);
    strcpy(longer, "https://github.com/o/");
    memset(longer + strlen(longer), 'r', 1000);
    longer[1021] = '\0';
    ck_assert_int_lt(build_parse_repo(longer, &base, owner, repo), 0);
    ck_assert_ptr_null(base);
    free(longer);
}
END_TEST

START_TEST(cache_key)
{
    char key[65], other[65];

    /* sha256 of "REPO\nSHA\n/runners/\nENV\n": the value every server
     * computes for these, so their runners share one folder. */
    ck_assert_int_eq(build_cache_key("https://github.com/lookit/ember-lookit-frameplayer", SHA,
                                     "fedcba9876543210", key), 0);
    ck_assert_str_eq(key, "1ff9646cf759f6cc82182c04fe8c6f3d24f5b7cf984d1e3bc628977bc2a177d4");
    /* Another environment is another runner. */
    ck_assert_int_eq(build_cache_key("https://github.com/lookit/ember-lookit-frameplayer", SHA,
                                     "fedcba9876543211", other), 0);
    ck_assert_str_ne(key, other);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("build_resolve");
    TCase *tc = tcase_create("pure");
    tcase_add_test(tc, parses_a_repository);
    tcase_add_test(tc, refuses_what_is_not_one);
    tcase_add_test(tc, cache_key);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
