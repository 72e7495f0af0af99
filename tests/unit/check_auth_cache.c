/* Unit tests of http/auth_cache on a started app (unit_app: the pool
 * listening): entries come back as put; a put whose ticket an eviction
 * outdated is dropped; a user's own write evicts that user only, a site
 * admin's every session user; the notification evicts one token by hash
 * or, empty, everything; auth_users_changed empties both caches. */
#include <check.h>
#include <string.h>

#include "studyhub/http/auth_cache.h"
#include "unit_app.h"

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static struct auth_session_entry session(int64_t id, int epoch, bool admin)
{
    struct auth_session_entry e;

    memset(&e, 0, sizeof e);
    e.user.id = id;
    e.user.is_site_admin = admin;
    e.epoch = epoch;
    return e;
}

static struct auth_token_entry token(int64_t id)
{
    struct auth_token_entry e;

    memset(&e, 0, sizeof e);
    e.user.id = id;
    e.expires_at = 4102444800;   /* 2100 */
    return e;
}

static void put_both(void)
{
    struct auth_session_entry s1 = session(101, 3, false), s2 = session(102, 0, false);
    struct auth_token_entry ta = token(101), tb = token(102);

    auth_cache_put_session(auth_cache_ticket_sessions(), &s1);
    auth_cache_put_session(auth_cache_ticket_sessions(), &s2);
    auth_cache_put_token(auth_cache_ticket_tokens(), HASH_A, &ta);
    auth_cache_put_token(auth_cache_ticket_tokens(), HASH_B, &tb);
}

static bool usable(void *arg)
{
    (void)arg;
    return auth_cache_usable();
}

START_TEST(kept_as_put)
{
    struct unit_app *u = unit_app_start(NULL, NULL);

    ck_assert(unit_await(u, usable, NULL));   /* once the LISTEN is in */
    ck_assert_ptr_null(auth_cache_session(101));
    put_both();
    const struct auth_session_entry *s = auth_cache_session(101);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->epoch, 3);
    ck_assert_int_eq(auth_cache_token(HASH_B)->user.id, 102);
    ck_assert_ptr_null(auth_cache_token("cccc"));
    unit_app_stop(u);
}
END_TEST

START_TEST(outdated_ticket_is_dropped)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct auth_session_entry s = session(201, 0, false);
    struct auth_token_entry t = token(201);

    /* A lookup began, then someone's write evicted: the row read may be
     * from before that write. */
    uint64_t st = auth_cache_ticket_sessions(), tt = auth_cache_ticket_tokens();
    struct auth_user other = { .id = 999 };
    auth_cache_user_wrote(&other);
    auth_token_forget(HASH_B);
    auth_cache_put_session(st, &s);
    auth_cache_put_token(tt, HASH_A, &t);
    ck_assert_ptr_null(auth_cache_session(201));
    ck_assert_ptr_null(auth_cache_token(HASH_A));
    unit_app_stop(u);
}
END_TEST

START_TEST(own_write_evicts_own)
{
    struct unit_app *u = unit_app_start(NULL, NULL);

    put_both();
    auth_cache_user_wrote(&auth_cache_session(101)->user);
    ck_assert_ptr_null(auth_cache_session(101));
    ck_assert_ptr_nonnull(auth_cache_session(102));
    ck_assert_ptr_nonnull(auth_cache_token(HASH_A));   /* tokens: by the NOTIFY */
    unit_app_stop(u);
}
END_TEST

START_TEST(admin_write_evicts_every_session)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct auth_session_entry admin = session(301, 0, true);

    put_both();
    auth_cache_user_wrote(&admin.user);
    ck_assert_ptr_null(auth_cache_session(101));
    ck_assert_ptr_null(auth_cache_session(102));
    ck_assert_ptr_nonnull(auth_cache_token(HASH_B));
    unit_app_stop(u);
}
END_TEST

START_TEST(notification)
{
    struct unit_app *u = unit_app_start(NULL, NULL);

    put_both();
    auth_cache_notified("auth_changed", HASH_A, NULL);   /* a token revoked */
    ck_assert_ptr_null(auth_cache_token(HASH_A));
    ck_assert_ptr_nonnull(auth_cache_token(HASH_B));
    ck_assert_ptr_nonnull(auth_cache_session(101));
    auth_cache_notified("auth_changed", "", NULL);       /* a user changed */
    ck_assert_ptr_null(auth_cache_token(HASH_B));
    ck_assert_ptr_null(auth_cache_session(101));
    ck_assert_ptr_null(auth_cache_session(102));
    unit_app_stop(u);
}
END_TEST

START_TEST(users_changed_empties_both)
{
    struct unit_app *u = unit_app_start(NULL, NULL);

    put_both();
    auth_users_changed();
    ck_assert_ptr_null(auth_cache_token(HASH_A));
    ck_assert_ptr_null(auth_cache_token(HASH_B));
    ck_assert_ptr_null(auth_cache_session(101));
    ck_assert_ptr_null(auth_cache_session(102));
    unit_app_stop(u);
}
END_TEST

static Suite *auth_cache_suite(void)
{
    Suite *s = suite_create("auth_cache");
    TCase *tc = tcase_create("caches");

    tcase_add_test(tc, kept_as_put);
    tcase_add_test(tc, outdated_ticket_is_dropped);
    tcase_add_test(tc, own_write_evicts_own);
    tcase_add_test(tc, admin_write_evicts_every_session);
    tcase_add_test(tc, notification);
    tcase_add_test(tc, users_changed_empties_both);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_auth_cache", auth_cache_suite());
}
