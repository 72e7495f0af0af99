/* Unit tests of auth_limit's client address: the TCP peer unless it is a
 * trusted proxy, then X-Forwarded-For read right to left past the trusted
 * proxies, stopping at anything malformed. */
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/config.h"
#include "studyhub/http/auth_limit.h"
#include "unit_main.h"

static const char *fake_getenv(const char *name, void *arg)
{
    const char *const *env = arg;
    for (; env && env[0]; env += 2)
        if (strcmp(env[0], name) == 0)
            return env[1];
    return NULL;
}

static struct config cfg;

static void with_proxies(const char *list)
{
    const char *env[] = { "TRUSTED_PROXIES", list, NULL };
    char err[256] = "";
    ck_assert_msg(config_load(&cfg, fake_getenv, list ? (void *)env : NULL, err,
                              sizeof err) == 0, "%s", err);
}

static const char *addr(const char *peer, const char *xff)
{
    static char out[INET6_ADDRSTRLEN + 1];
    auth_client_addr_of(&cfg, peer, xff, out, sizeof out);
    return out;
}

START_TEST(no_trusted_proxies_means_the_peer)
{
    with_proxies(NULL);
    ck_assert_str_eq(addr("203.0.113.7", NULL), "203.0.113.7");
    /* Anyone may send the header: without trusted proxies it is ignored. */
    ck_assert_str_eq(addr("203.0.113.7", "198.51.100.1"), "203.0.113.7");
    ck_assert_str_eq(addr(NULL, "198.51.100.1"), "");
    config_cleanup(&cfg);
}
END_TEST

START_TEST(right_most_untrusted_address)
{
    with_proxies("10.0.0.0/8,::1");
    /* An untrusted peer's header is its own invention. */
    ck_assert_str_eq(addr("203.0.113.7", "198.51.100.1"), "203.0.113.7");
    /* Through one proxy, then through two: the first address no trusted
     * proxy vouches for; what the client put left of it is ignored. */
    ck_assert_str_eq(addr("10.0.0.1", "198.51.100.1"), "198.51.100.1");
    ck_assert_str_eq(addr("::1", " 6.6.6.6 , 198.51.100.1 ,10.0.0.2"), "198.51.100.1");
    ck_assert_str_eq(addr("10.0.0.1", "2001:db8::5"), "2001:db8::5");
    /* Every hop trusted: the left-most. */
    ck_assert_str_eq(addr("10.0.0.1", "10.1.1.1, 10.2.2.2"), "10.1.1.1");
    ck_assert_str_eq(addr("10.0.0.1", NULL), "10.0.0.1");
    config_cleanup(&cfg);
}
END_TEST

START_TEST(malformed_keeps_the_last_good_one)
{
    with_proxies("10.0.0.0/8");
    ck_assert_str_eq(addr("10.0.0.1", "not-an-ip"), "10.0.0.1");
    ck_assert_str_eq(addr("10.0.0.1", "198.51.100.1, junk, 10.0.0.9"), "10.0.0.9");
    ck_assert_str_eq(addr("10.0.0.1", "198.51.100.1,,10.0.0.9"), "10.0.0.9");
    ck_assert_str_eq(addr("10.0.0.1", ""), "10.0.0.1");
    char huge[300];
    memset(huge, '1', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    ck_assert_str_eq(addr("10.0.0.1", huge), "10.0.0.1");
    config_cleanup(&cfg);
}
END_TEST

START_TEST(account_key_is_the_lower_cased_email)
{
    char key[32];

    auth_account_key(key, sizeof key, "ld:acct:", "Ann.Lee@Example.ORG");
    ck_assert_str_eq(key, "ld:acct:ann.lee@example.org");
    /* Only ASCII letters change: the lookups' lower() on UTF-8 is not ours to copy. */
    auth_account_key(key, sizeof key, "p:", "\xc3\x89mile@X.org");
    ck_assert_str_eq(key, "p:\xc3\x89mile@x.org");
    auth_account_key(key, sizeof key, "p:", NULL);
    ck_assert_str_eq(key, "p:");
    /* Truncated to fit, always NUL-ended. */
    auth_account_key(key, 12, "rl:x:acct:", "ABCDEF@example.org");
    ck_assert_str_eq(key, "rl:x:acct:a");
    auth_account_key(key, 4, "rl:x:acct:", "A");
    ck_assert_str_eq(key, "rl:");
}
END_TEST

static Suite *auth_limit_suite(void)
{
    Suite *s = suite_create("auth_limit");
    TCase *tc = tcase_create("client address");
    tcase_add_test(tc, no_trusted_proxies_means_the_peer);
    tcase_add_test(tc, right_most_untrusted_address);
    tcase_add_test(tc, malformed_keeps_the_last_good_one);
    suite_add_tcase(s, tc);
    tc = tcase_create("account key");
    tcase_add_test(tc, account_key_is_the_lower_cased_email);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(auth_limit_suite());
}
