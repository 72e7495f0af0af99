/* Unit tests of ptrmap: put, replace, get, delete, tombstone reuse, growth,
 * and a long random run against a plain array as the reference. */
#include <check.h>
#include <stdlib.h>

#include "studyhub/core/ptrmap.h"
#include "unit_main.h"

START_TEST(put_get_del)
{
    struct ptrmap m = { 0 };
    static int a, b, c;   /* only their addresses matter */

    ck_assert_ptr_null(ptrmap_get(&m, &a));
    ck_assert_ptr_null(ptrmap_del(&m, &a));      /* empty map */
    ck_assert_int_eq(ptrmap_put(&m, &a, &b), 1);
    ck_assert_int_eq(ptrmap_put(&m, &b, &c), 1);
    ck_assert_ptr_eq(ptrmap_get(&m, &a), &b);
    ck_assert_int_eq(ptrmap_put(&m, &a, &c), 0);  /* replaced */
    ck_assert_ptr_eq(ptrmap_get(&m, &a), &c);
    ck_assert_uint_eq(ptrmap_count(&m), 2);
    ck_assert_ptr_eq(ptrmap_del(&m, &a), &c);
    ck_assert_ptr_null(ptrmap_get(&m, &a));
    ck_assert_ptr_null(ptrmap_del(&m, &a));
    ck_assert_uint_eq(ptrmap_count(&m), 1);
    ck_assert_int_eq(ptrmap_put(&m, &a, &b), 1);  /* a tombstone reused */
    ck_assert_ptr_eq(ptrmap_get(&m, &a), &b);
    ptrmap_cleanup(&m);
    ck_assert_uint_eq(ptrmap_count(&m), 0);
}
END_TEST

/* Keys are addresses inside one array, as heap objects are. */
START_TEST(random_against_reference)
{
    enum { N = 3000 };
    static char keys[N];
    static void *ref[N];
    struct ptrmap m = { 0 };
    size_t live = 0;

    srand(7);
    for (int round = 0; round < 200000; round++) {
        int k = rand() % N;

        if (rand() % 3) {
            void *v = &keys[rand() % N];
            int r = ptrmap_put(&m, &keys[k], v);

            ck_assert_int_eq(r, ref[k] ? 0 : 1);
            live += ref[k] ? 0 : 1;
            ref[k] = v;
        } else {
            ck_assert_ptr_eq(ptrmap_del(&m, &keys[k]), ref[k]);
            live -= ref[k] ? 1 : 0;
            ref[k] = NULL;
        }
        ck_assert_uint_eq(ptrmap_count(&m), live);
    }
    for (int k = 0; k < N; k++)
        ck_assert_ptr_eq(ptrmap_get(&m, &keys[k]), ref[k]);
    /* Tombstones never fill the table: it stays at most half used. */
    ck_assert_uint_le(m.used * 2, m.cap);
    ptrmap_cleanup(&m);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ptrmap");
    TCase *tc = tcase_create("map");

    tcase_add_test(tc, put_get_del);
    tcase_add_test(tc, random_against_reference);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
