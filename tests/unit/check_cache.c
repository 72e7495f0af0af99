/* Unit tests of cache: get/put/del, the ticket that stops a stale put after
 * an invalidation of its key, held values, the TTL, eviction at the size bound, and many keys
 * against a reference (deletions keep every other key findable). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "studyhub/core/cache.h"
#include "unit_main.h"

START_TEST(put_get_del)
{
    struct cache *c = cache_new(16, 60);
    size_t len = 0;

    ck_assert_ptr_null(cache_get(c, "a", &len));
    cache_put(c, cache_ticket(c), "a", "one", 3);
    const char *v = cache_get(c, "a", &len);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(v, "one", 3), 0);
    cache_put(c, cache_ticket(c), "a", "two!", 4);   /* replaced */
    v = cache_get(c, "a", &len);
    ck_assert_uint_eq(len, 4);
    ck_assert_int_eq(memcmp(v, "two!", 4), 0);
    ck_assert_uint_eq(cache_size(c), 1);
    cache_del(c, "a");
    ck_assert_ptr_null(cache_get(c, "a", &len));
    cache_del(c, "never there");
    ck_assert_uint_eq(cache_size(c), 0);
    cache_free(c);
}
END_TEST

/* A query read the old row, the change's notification flushed the key,
 * then the old answer came back: it must not be stored. */
START_TEST(stale_put_after_invalidation)
{
    struct cache *c = cache_new(16, 60);
    size_t len;
    uint64_t t = cache_ticket(c);

    cache_del(c, "study");
    cache_put(c, t, "study", "old", 3);
    ck_assert_ptr_null(cache_get(c, "study", &len));
    t = cache_ticket(c);
    cache_clear(c);
    cache_put(c, t, "study", "old", 3);
    ck_assert_ptr_null(cache_get(c, "study", &len));
    cache_put(c, cache_ticket(c), "study", "new", 3);
    ck_assert_ptr_nonnull(cache_get(c, "study", &len));
    cache_free(c);
}
END_TEST

/* A del outdates the puts in flight of its own key, not of every key: a
 * logout on a busy server must not drop every session lookup under way. */
START_TEST(del_outdates_its_key_only)
{
    struct cache *c = cache_new(64, 60);
    size_t len;
    uint64_t t = cache_ticket(c);
    char key[32];
    int kept = 0;

    cache_del(c, "session-a");
    cache_put(c, t, "session-a", "old", 3);
    ck_assert_ptr_null(cache_get(c, "session-a", &len));
    /* Of 40 other keys, those not sharing the del's slot are stored. */
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "session-%d", i);
        cache_put(c, t, key, "v", 1);
        kept += cache_get(c, key, &len) != NULL;
    }
    ck_assert_int_ge(kept, 36);
    /* A put for room empties the cache but outdates nothing. */
    struct cache *small = cache_new(2, 60);
    t = cache_ticket(small);
    cache_put(small, t, "x", "1", 1);
    cache_put(small, t, "y", "2", 1);
    cache_put(small, t, "z", "3", 1);
    ck_assert_ptr_nonnull(cache_get(small, "z", &len));
    cache_free(small);
    cache_free(c);
}
END_TEST

/* A held value stays readable past del, replacement, clear and free of
 * its cache, until released (ASan sees a use after free otherwise). */
START_TEST(held_value_outlives_its_entry)
{
    struct cache *c = cache_new(16, 60);
    size_t len = 0;

    ck_assert_ptr_null(cache_hold(c, "a", &len));
    cache_release(NULL);
    cache_put(c, cache_ticket(c), "a", "first", 5);
    const char *one = cache_hold(c, "a", &len);
    const char *two = cache_hold(c, "a", &len);
    ck_assert_uint_eq(len, 5);
    cache_put(c, cache_ticket(c), "a", "second", 6);
    ck_assert_int_eq(memcmp(one, "first", 5), 0);
    cache_del(c, "a");
    cache_release(one);
    ck_assert_int_eq(memcmp(two, "first", 5), 0);
    cache_put(c, cache_ticket(c), "b", "third", 5);
    const char *three = cache_hold(c, "b", &len);
    cache_clear(c);
    cache_free(c);
    ck_assert_int_eq(memcmp(two, "first", 5), 0);
    ck_assert_int_eq(memcmp(three, "third", 5), 0);
    cache_release(two);
    cache_release(three);
}
END_TEST

START_TEST(ttl_expires)
{
    struct cache *c = cache_new(16, 1);
    size_t len;

    cache_put(c, cache_ticket(c), "k", "v", 1);
    ck_assert_ptr_nonnull(cache_get(c, "k", &len));
    sleep(2);
    ck_assert_ptr_null(cache_get(c, "k", &len));
    cache_free(c);
}
END_TEST

/* A byte budget: a put past it empties the cache first; a value larger
 * than the whole budget is not kept; replacing a value frees its bytes. */
START_TEST(byte_budget)
{
    struct cache *c = cache_new(100, 60);
    char big[600];
    size_t len;

    memset(big, 'x', sizeof big);
    cache_limit_bytes(c, 1000);
    cache_put(c, cache_ticket(c), "a", big, 400);
    cache_put(c, cache_ticket(c), "b", big, 400);
    ck_assert_uint_eq(cache_size(c), 2);
    cache_put(c, cache_ticket(c), "b", big, 500);       /* replaced: 900 in all */
    ck_assert_uint_eq(cache_size(c), 2);
    ck_assert_ptr_nonnull(cache_get(c, "b", &len));
    ck_assert_uint_eq(len, 500);
    cache_put(c, cache_ticket(c), "c", big, 200);       /* 1100: emptied first */
    ck_assert_uint_eq(cache_size(c), 1);
    ck_assert_ptr_null(cache_get(c, "a", &len));
    ck_assert_ptr_nonnull(cache_get(c, "c", &len));
    uint64_t t = cache_ticket(c);
    char huge[1001] = { 0 };
    cache_put(c, t, "d", huge, sizeof huge);             /* larger than the budget */
    ck_assert_ptr_null(cache_get(c, "d", &len));
    ck_assert_ptr_nonnull(cache_get(c, "c", &len));
    cache_put(c, t, "e", big, 100);                      /* the ticket still holds */
    ck_assert_ptr_nonnull(cache_get(c, "e", &len));
    cache_free(c);
}
END_TEST

START_TEST(bounded_and_many_keys)
{
    enum { MAX = 64, N = 5000 };
    struct cache *c = cache_new(MAX, 600);
    char key[32], val[32];
    size_t len;

    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(val, sizeof val, "val-%d", i);
        cache_put(c, cache_ticket(c), key, val, strlen(val) + 1);
        ck_assert_uint_le(cache_size(c), MAX);
        /* The key just stored is there, with its value. */
        const char *v = cache_get(c, key, &len);
        ck_assert_ptr_nonnull(v);
        ck_assert_str_eq(v, val);
        if (i % 3 == 0)
            cache_del(c, key);
    }
    /* Whatever is still stored answers with its own value. */
    size_t found = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(val, sizeof val, "val-%d", i);
        const char *v = cache_get(c, key, &len);
        if (v) {
            ck_assert_str_eq(v, val);
            ck_assert(i % 3 != 0);
            found++;
        }
    }
    ck_assert_uint_eq(found, cache_size(c));
    cache_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("cache");

    tcase_add_test(tc, put_get_del);
    tcase_add_test(tc, stale_put_after_invalidation);
    tcase_add_test(tc, del_outdates_its_key_only);
    tcase_add_test(tc, held_value_outlives_its_entry);
    tcase_add_test(tc, ttl_expires);
    tcase_add_test(tc, bounded_and_many_keys);
    tcase_add_test(tc, byte_budget);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
