/* Unit tests of cache: get/put/del, the ticket that stops a stale put after
 * an invalidation, the TTL, eviction at the size bound, and many keys
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
