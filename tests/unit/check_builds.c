/* Unit tests of builds: which runner repositories a server may build
 * (RUNNER_REPO_URL, and RUNNER_REPO_ALLOW's comma-separated prefixes). */
#include <check.h>
#include <stdlib.h>

#include "studyhub/core/config.h"
#include "studyhub/domain/builds.h"
#include "unit_main.h"

START_TEST(repo_allowed)
{
    struct config c = { 0 };

    c.runner_repo_url = "https://github.com/lookit/ember-lookit-frameplayer";
    c.runner_repo_allow = "";
    ck_assert(builds_repo_allowed(&c, "https://github.com/lookit/ember-lookit-frameplayer"));
    ck_assert(!builds_repo_allowed(&c, "https://github.com/lookit/ember-lookit-frameplayer2"));
    ck_assert(!builds_repo_allowed(&c, "https://github.com/evil/x"));

    c.runner_repo_allow = " https://github.com/lab-a/ ,https://github.com/lab-b/runner, ";
    ck_assert(builds_repo_allowed(&c, "https://github.com/lab-a/anything"));
    ck_assert(builds_repo_allowed(&c, "https://github.com/lab-b/runner"));
    ck_assert(builds_repo_allowed(&c, "https://github.com/lab-b/runner-fork"));  /* a prefix */
    ck_assert(!builds_repo_allowed(&c, "https://github.com/lab-c/runner"));
    ck_assert(!builds_repo_allowed(&c, "http://github.com/lab-a/x"));
    /* An empty entry (",,", or blanks) allows nothing. */
    c.runner_repo_allow = " , ,";
    ck_assert(!builds_repo_allowed(&c, "https://github.com/lab-a/x"));
    c.runner_repo_allow = NULL;
    ck_assert(!builds_repo_allowed(&c, "https://github.com/lab-a/x"));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("builds");
    TCase *tc = tcase_create("repos");

    tcase_add_test(tc, repo_allowed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
