/* Unit tests of http/auth_cache on a started app (unit_app: the pool
 * listening): entries come back as put; a put whose ticket an eviction
 * outdated is dropped; a user's own write evicts that user only, a site
 * admin's every session user; the notification evicts one token by hash
 * or, empty, everything; auth_users_changed empties both caches.  Session
 * ids: kept until their own end, forgotten on this server at once by
 * auth_cache_sid_ended and on every server by the "sessions" payload. */
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
    struct auth_session_entry s = session(201, 0, false), s2 = session(202, 0, false);
    struct auth_token_entry t = token(201), t2 = token(202);

    /* A lookup began, then that user's write (or the token's end)
     * evicted: the row read may be from before it, so it is not kept. */
    uint64_t st = auth_cache_ticket_sessions(), tt = auth_cache_ticket_tokens();
    auth_cache_user_wrote(&s.user);
    auth_token_forget(HASH_A);
    auth_cache_put_session(st, &s);
    auth_cache_put_token(tt, HASH_A, &t);
    ck_assert_ptr_null(auth_cache_session(201));
    ck_assert_ptr_null(auth_cache_token(HASH_A));
    /* Someone else's eviction in between outdates nothing of theirs. */
    st = auth_cache_ticket_sessions();
    tt = auth_cache_ticket_tokens();
    struct auth_user other = { .id = 999 };
    auth_cache_user_wrote(&other);
    auth_token_forget("cccc");
    auth_cache_put_session(st, &s2);
    auth_cache_put_token(tt, HASH_B, &t2);
    ck_assert_ptr_nonnull(auth_cache_session(202));
    ck_assert_ptr_nonnull(auth_cache_token(HASH_B));
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

START_TEST(admin_write_evicts_every_user)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct auth_session_entry admin = session(301, 0, true);

    put_both();
    auth_cache_user_wrote(&admin.user);
    ck_assert_ptr_null(auth_cache_session(101));
    ck_assert_ptr_null(auth_cache_session(102));
    ck_assert_ptr_null(auth_cache_token(HASH_B));     /* anyone's flags */
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

#define SID_A "1111111111111111111111111111111111111111111111111111111111111111"
#define SID_B "2222222222222222222222222222222222222222222222222222222222222222"

static struct auth_sid_entry sid(int64_t uid, int64_t expires_at)
{
    struct auth_sid_entry e;

    memset(&e, 0, sizeof e);
    e.uid = uid;
    e.epoch = 2;
    e.mfa = true;
    e.expires_at = expires_at;
    return e;
}

START_TEST(sid_kept_until_its_end)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct auth_sid_entry a = sid(401, 1000), b = sid(402, 0);

    auth_cache_put_sid(auth_cache_ticket_sids(), SID_A, &a);
    auth_cache_put_sid(auth_cache_ticket_sids(), SID_B, &b);   /* no end given */
    const struct auth_sid_entry *e = auth_cache_sid(SID_A, 999);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->uid, 401);
    ck_assert_int_eq(e->epoch, 2);
    ck_assert(e->mfa);
    ck_assert_ptr_null(auth_cache_sid(SID_A, 1000));        /* its second has come */
    ck_assert_ptr_null(auth_cache_sid(SID_B, 1));
    ck_assert_ptr_null(auth_cache_sid("3333", 1));
    unit_app_stop(u);
}
END_TEST

START_TEST(sid_ended_and_notified)
{
    struct unit_app *u = unit_app_start(NULL, NULL);
    struct auth_sid_entry a = sid(501, 4102444800), b = sid(502, 4102444800);
    uint64_t ticket = auth_cache_ticket_sids();

    auth_cache_put_sid(auth_cache_ticket_sids(), SID_A, &a);
    auth_cache_put_sid(auth_cache_ticket_sids(), SID_B, &b);
    auth_cache_sid_ended(SID_A);                            /* a logout here */
    ck_assert_ptr_null(auth_cache_sid(SID_A, 1));
    ck_assert_ptr_nonnull(auth_cache_sid(SID_B, 1));
    auth_cache_put_sid(ticket, SID_A, &a);                  /* a GET from before it */
    ck_assert_ptr_null(auth_cache_sid(SID_A, 1));
    auth_cache_notified("auth_changed", "", NULL);          /* a user: not sessions */
    ck_assert_ptr_nonnull(auth_cache_sid(SID_B, 1));
    auth_cache_notified("auth_changed", AUTH_CACHE_SESSIONS_ENDED, NULL);
    ck_assert_ptr_null(auth_cache_sid(SID_B, 1));           /* a logout elsewhere */
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
    tcase_add_test(tc, admin_write_evicts_every_user);
    tcase_add_test(tc, notification);
    tcase_add_test(tc, users_changed_empties_both);
    tcase_add_test(tc, sid_kept_until_its_end);
    tcase_add_test(tc, sid_ended_and_notified);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_app_main("check_auth_cache", auth_cache_suite());
}
