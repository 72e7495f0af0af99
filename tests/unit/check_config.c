/* Unit tests of config: defaults, parsing and the messages of bad values. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/core/config.h"
#include "unit_main.h"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *fake_getenv(const char *name, void *arg)
{
    const char *const *env = arg;
    for (; env && env[0]; env += 2)
        if (strcmp(env[0], name) == 0)
            return env[1];
    return NULL;
}

START_TEST(defaults)
{
    struct config cfg;
    char err[256] = "";
    ck_assert_int_eq(config_load(&cfg, fake_getenv, NULL, err, sizeof err), 0);
    ck_assert_str_eq(cfg.listen_addr, "127.0.0.1");
    ck_assert_int_eq(cfg.listen_port, 8000);
    ck_assert_str_eq(cfg.redis_host, "127.0.0.1");
    ck_assert_int_eq(cfg.redis_port, 6379);
    ck_assert_int_eq(cfg.redis_db, 0);
    ck_assert_int_eq(cfg.pg_pool_size, 4);
    ck_assert(cfg.migrate);
    ck_assert(!cfg.debug_routes);
    ck_assert_str_eq(cfg.base_url, "");
    config_cleanup(&cfg);
    ck_assert_ptr_null(cfg.listen_addr);
}
END_TEST

START_TEST(overrides)
{
    const char *env[] = { "LISTEN_PORT", "9001", "REDIS_URL", "redis://10.0.0.2:7000/3",
                          "DEBUG_ROUTES", "1", "BASE_URL", "https://lookit.example.org",
                          "LOG_LEVEL", "debug", NULL };
    struct config cfg;
    char err[256] = "";
    ck_assert_int_eq(config_load(&cfg, fake_getenv, env, err, sizeof err), 0);
    ck_assert_int_eq(cfg.listen_port, 9001);
    ck_assert_str_eq(cfg.redis_host, "10.0.0.2");
    ck_assert_int_eq(cfg.redis_port, 7000);
    ck_assert_int_eq(cfg.redis_db, 3);
    ck_assert(cfg.debug_routes);
    ck_assert_str_eq(cfg.base_url, "https://lookit.example.org");
    config_cleanup(&cfg);
}
END_TEST

/* Each bad value is refused with a message that starts with its name. */
static const char *const bad[][2] = {
    { "LISTEN_PORT", "abc" },
    { "LISTEN_PORT", "70000" },
    { "LISTEN_PORT", "80x" },
    { "LISTEN_ADDR", "localhost" },
    { "PG_POOL_SIZE", "0" },
    { "PG_POOL_SIZE", "" },
    { "REDIS_URL", "http://127.0.0.1" },
    { "REDIS_URL", "redis://redis.example:6379" },
    { "REDIS_URL", "redis://127.0.0.1:0" },
    { "REDIS_URL", "redis://127.0.0.1:6379/x" },
    { "MIGRATE", "maybe" },
    { "LOG_LEVEL", "loud" },
    { "BASE_URL", "ftp://x" },
    { "BASE_URL", "http://x/" },
    { "RUNNER_BASE_URL", "lookit-runner.example" },
    { "RUNNER_BASE_URL", "https://lookit-runner.example/path" },
    { "RUNNER_BASE_URL", "https://" },
    { "RUNNER_BASE_URL", "https://user@lookit-runner.example" },
    { "RUNNER_BASE_URL", "http://127.0.0.1:9000" },      /* the site's host (LISTEN_ADDR) */
    { "MAX_BODY_BYTES", "-1" },
    { "REDIS_URL", "redis://user:pw@127.0.0.1:6379/0" },
    { "REDIS_URL", "redis://:@127.0.0.1:6379/0" },
    { "REDIS_URL", "redis://:pw@127.0.0.1@x" },
    { "TOTP_SECRET_KEY", "abcd" },
    { "TOTP_SECRET_KEY", "zz00000000000000000000000000000000000000000000000000000000000000" },
    { "TOTP_SECRET_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==" },
    { "TRUSTED_PROXIES", "10.0.0.0/33" },
    { "TRUSTED_PROXIES", "::1/129" },
    { "TRUSTED_PROXIES", "10.0.0.1,proxy.example" },
    { "TRUSTED_PROXIES", "10.0.0.1/-1" },
    { "BUILD_SANDBOX", "firejail" },
    { "BUILD_NETWORK", "sometimes" },
    { "BUILD_UID", "0" },
    { "BUILD_RO_PATHS", "opt/node" },
    { "BUILD_RO_PATHS", "/opt, /" },
    { "BUILD_RO_PATHS", "/opt/../etc" },
};

START_TEST(bad_values)
{
    const char *env[] = { bad[_i][0], bad[_i][1], NULL };
    struct config cfg;
    char err[256] = "";
    ck_assert_int_eq(config_load(&cfg, fake_getenv, env, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, bad[_i][0], strlen(bad[_i][0])) == 0,
                  "message '%s' does not name %s", err, bad[_i][0]);
}
END_TEST

/* Off loopback, links cannot name the listening address: BASE_URL is
 * required, and the message says so. */
START_TEST(public_listener_needs_base_url)
{
    const char *public_env[] = { "LISTEN_ADDR", "0.0.0.0", NULL };
    const char *public_ok[] = { "LISTEN_ADDR", "0.0.0.0", "BASE_URL", "https://x.example", NULL };
    const char *loop6[] = { "LISTEN_ADDR", "::1", NULL };
    const char *loop8[] = { "LISTEN_ADDR", "127.0.0.2", NULL };
    struct config cfg;
    char err[256] = "";
    ck_assert_int_eq(config_load(&cfg, fake_getenv, public_env, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "BASE_URL:", 9) == 0, "message: %s", err);
    ck_assert_int_eq(config_load(&cfg, fake_getenv, public_ok, err, sizeof err), 0);
    config_cleanup(&cfg);
    ck_assert_int_eq(config_load(&cfg, fake_getenv, loop6, err, sizeof err), 0);
    config_cleanup(&cfg);
    ck_assert_int_eq(config_load(&cfg, fake_getenv, loop8, err, sizeof err), 0);
    ck_assert_str_eq(cfg.metrics_token, "");
    config_cleanup(&cfg);
}
END_TEST

/* The runner's host must not be the site's, whatever the port: browsers
 * share cookies between the ports of one host. */
START_TEST(runner_host_differs_from_the_site)
{
    const char *same[] = { "BASE_URL", "https://lookit.example.org",
                           "RUNNER_BASE_URL", "https://LOOKIT.example.org:8443", NULL };
    const char *other[] = { "BASE_URL", "https://lookit.example.org",
                            "RUNNER_BASE_URL", "https://lookit-runner.example", NULL };
    const char *local[] = { "RUNNER_BASE_URL", "http://localhost:9000", NULL };
    struct config cfg;
    char err[256] = "";

    ck_assert_int_eq(config_load(&cfg, fake_getenv, same, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "RUNNER_BASE_URL:", 16) == 0, "message: %s", err);
    ck_assert_int_eq(config_load(&cfg, fake_getenv, other, err, sizeof err), 0);
    ck_assert_str_eq(cfg.runner_base_url, "https://lookit-runner.example");
    config_cleanup(&cfg);
    ck_assert_int_eq(config_load(&cfg, fake_getenv, local, err, sizeof err), 0);
    config_cleanup(&cfg);
}
END_TEST

START_TEST(help_lists_every_variable)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print_help(f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "DATABASE_URL"));
    ck_assert_ptr_nonnull(strstr(text, "REDIS_URL"));
    ck_assert_ptr_nonnull(strstr(text, "DRAIN_TIMEOUT_S"));
    free(text);
}
END_TEST

START_TEST(redis_password_and_secrets)
{
    const char *env[] = { "REDIS_URL", "redis://:s3cr:et@10.0.0.2:7000/3",
                          "TOTP_SECRET_KEY",
                          "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F",
                          NULL };
    struct config cfg;
    char err[256] = "";
    ck_assert_int_eq(config_load(&cfg, fake_getenv, env, err, sizeof err), 0);
    ck_assert_str_eq(cfg.redis_host, "10.0.0.2");
    ck_assert_str_eq(cfg.redis_password, "s3cr:et");
    ck_assert_int_eq(cfg.redis_db, 3);
    ck_assert(cfg.totp_key_set);
    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(cfg.totp_key[i], i);
    config_cleanup(&cfg);
    ck_assert_ptr_null(cfg.redis_password);

    /* base64 of the same 32 bytes; no password; no key. */
    const char *env2[] = { "TOTP_SECRET_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", NULL };
    ck_assert_int_eq(config_load(&cfg, fake_getenv, env2, err, sizeof err), 0);
    ck_assert_ptr_null(cfg.redis_password);
    ck_assert(cfg.totp_key_set);
    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(cfg.totp_key[i], i);
    config_cleanup(&cfg);
    ck_assert_int_eq(config_load(&cfg, fake_getenv, NULL, err, sizeof err), 0);
    ck_assert(!cfg.totp_key_set);
    config_cleanup(&cfg);
}
END_TEST

START_TEST(trusted_proxies)
{
    const char *env[] = { "TRUSTED_PROXIES", " 10.0.0.0/8 , 192.0.2.7,2001:db8::/32,,::1", NULL };
    struct config cfg;
    char err[256] = "";
    ck_assert_int_eq(config_load(&cfg, fake_getenv, env, err, sizeof err), 0);
    ck_assert_int_eq(cfg.n_trusted_proxies, 4);
    const struct config_cidr *l = cfg.trusted_proxies_list;
    int n = cfg.n_trusted_proxies;
    ck_assert(config_addr_in(l, n, "10.200.3.4"));
    ck_assert(!config_addr_in(l, n, "11.0.0.1"));
    ck_assert(config_addr_in(l, n, "192.0.2.7"));
    ck_assert(!config_addr_in(l, n, "192.0.2.8"));
    ck_assert(config_addr_in(l, n, "2001:db8:1::5"));
    ck_assert(!config_addr_in(l, n, "2001:db9::5"));
    ck_assert(config_addr_in(l, n, "::1"));
    ck_assert(!config_addr_in(l, n, "127.0.0.1"));
    ck_assert(!config_addr_in(l, n, "not an address"));
    ck_assert(!config_addr_in(l, n, NULL));
    config_cleanup(&cfg);
    /* Odd prefix lengths compare the partial byte. */
    const char *env2[] = { "TRUSTED_PROXIES", "172.16.0.0/12", NULL };
    ck_assert_int_eq(config_load(&cfg, fake_getenv, env2, err, sizeof err), 0);
    ck_assert(config_addr_in(cfg.trusted_proxies_list, 1, "172.31.255.255"));
    ck_assert(!config_addr_in(cfg.trusted_proxies_list, 1, "172.32.0.0"));
    config_cleanup(&cfg);
    ck_assert_int_eq(config_load(&cfg, fake_getenv, NULL, err, sizeof err), 0);
    ck_assert_int_eq(cfg.n_trusted_proxies, 0);
    config_cleanup(&cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, overrides);
    tcase_add_loop_test(tc, bad_values, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, help_lists_every_variable);
    tcase_add_test(tc, public_listener_needs_base_url);
    tcase_add_test(tc, runner_host_differs_from_the_site);
    tcase_add_test(tc, redis_password_and_secrets);
    tcase_add_test(tc, trusted_proxies);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
