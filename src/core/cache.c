/* cache: open addressing by a word-at-a-time hash of the key, linear probing,
 * backward-shift deletion (no tombstones).  When full it is cleared: the
 * working sets here (active studies, live tokens) are far below the cap. */
#include "studyhub/core/cache.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A value's bytes follow its count of holders: the entry is one, and each
 * cache_hold another, so a held value outlives its entry. */
struct cache_value {
    size_t refs;
    unsigned char bytes[];
};

#define DELETED_SLOTS 256   /* a power of two */

struct cache_entry {
    char *key;          /* owned; NULL = empty slot */
    void *value;        /* the bytes of a cache_value (one of its refs) */
    size_t len;
    time_t expires;     /* monotonic seconds */
};

struct cache {
    struct cache_entry *slots;  /* owned array of cap */
    size_t cap;                 /* power of two, twice max entries */
    size_t count;
    size_t max;
    size_t bytes;               /* of the values stored */
    size_t max_bytes;           /* 0: no limit */
    int ttl_s;
    /* Tickets: seq moves on at every del and clear.  A put is stale when
     * its key's slot of deleted_at (the keys whose hash shares its low
     * bits), or cleared_at, moved past its ticket: a del outdates puts in
     * flight of its own key (and of a few others), not of every key. */
    uint64_t seq;
    uint64_t cleared_at;
    uint64_t deleted_at[DELETED_SLOTS];
};

static time_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* Eight bytes a step, each mixed in by a multiply and a shift: the keys
 * (session ids, "uid study child", storage keys) are 20 to 130 bytes,
 * where FNV's byte a step showed in a page's profile. */
static size_t hash_key(const char *k)
{
    size_t n = strlen(k);
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;
    const char *p = k;

    for (; n >= 8; n -= 8, p += 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (size_t)h;
}

struct cache *cache_new(size_t max_entries, int ttl_s)
{
    struct cache *c = calloc(1, sizeof *c);
    size_t cap = 16;

    if (!c)
        return NULL;
    while (cap < max_entries * 2)
        cap *= 2;
    c->slots = calloc(cap, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->cap = cap;
    c->max = max_entries;
    c->ttl_s = ttl_s;
    return c;
}

void cache_limit_bytes(struct cache *c, size_t max_bytes)
{
    c->max_bytes = max_bytes;
}

static struct cache_value *value_of(const void *bytes)
{
    return (struct cache_value *)((char *)(uintptr_t)bytes - offsetof(struct cache_value, bytes));
}

void cache_release(const void *held)
{
    if (held && --value_of(held)->refs == 0)
        free(value_of(held));
}

static void entry_free(struct cache *c, struct cache_entry *e)
{
    c->bytes -= e->len;
    free(e->key);
    cache_release(e->value);
    memset(e, 0, sizeof *e);
}

/* Empties the cache without outdating puts in flight (for room). */
static void empty(struct cache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].key)
            entry_free(c, &c->slots[i]);
    c->count = 0;
}

void cache_clear(struct cache *c)
{
    empty(c);
    c->cleared_at = ++c->seq;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    empty(c);
    free(c->slots);
    free(c);
}

static struct cache_entry *find(const struct cache *c, const char *key, size_t *index)
{
    size_t i = hash_key(key) & (c->cap - 1);
    for (; c->slots[i].key; i = (i + 1) & (c->cap - 1)) {
        if (strcmp(c->slots[i].key, key) == 0) {
            *index = i;
            return &c->slots[i];
        }
    }
    *index = i;
    return NULL;
}

/* Removes slot i and shifts later members of its probe run back. */
static void remove_at(struct cache *c, size_t i)
{
    entry_free(c, &c->slots[i]);
    c->count--;
    for (size_t j = (i + 1) & (c->cap - 1); c->slots[j].key; j = (j + 1) & (c->cap - 1)) {
        size_t home = hash_key(c->slots[j].key) & (c->cap - 1);
        /* Move j into the hole at i if its home is not in (i, j]. */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            c->slots[i] = c->slots[j];
            memset(&c->slots[j], 0, sizeof c->slots[j]);
            i = j;
        }
    }
}

const void *cache_get(struct cache *c, const char *key, size_t *len)
{
    size_t i;
    struct cache_entry *e = find(c, key, &i);

    if (!e)
        return NULL;
    if (e->expires <= now_s()) {
        remove_at(c, i);
        return NULL;
    }
    if (len)
        *len = e->len;
    return e->value;
}

const void *cache_hold(struct cache *c, const char *key, size_t *len)
{
    const void *v = cache_get(c, key, len);

    if (v)
        value_of(v)->refs++;
    return v;
}

uint64_t cache_ticket(const struct cache *c)
{
    return c->seq;
}

void cache_put(struct cache *c, uint64_t ticket, const char *key,
               const void *value, size_t len)
{
    size_t i;
    struct cache_entry *e;

    size_t h = hash_key(key);

    if (ticket < c->cleared_at || ticket < c->deleted_at[h & (DELETED_SLOTS - 1)] ||
        (c->max_bytes && len > c->max_bytes))
        return;
    e = find(c, key, &i);
    if (e) {
        remove_at(c, i);
        find(c, key, &i);
    }
    if (c->count >= c->max || (c->max_bytes && c->bytes + len > c->max_bytes)) {
        empty(c);
        find(c, key, &i);
    }
    e = &c->slots[i];
    struct cache_value *cv = malloc(sizeof *cv + (len ? len : 1));
    e->key = strdup(key);
    if (!e->key || !cv) {
        free(e->key);
        free(cv);
        memset(e, 0, sizeof *e);
        return;
    }
    cv->refs = 1;
    memcpy(cv->bytes, value, len);
    e->value = cv->bytes;
    e->len = len;
    c->bytes += len;
    e->expires = now_s() + c->ttl_s;
    c->count++;
}

void cache_del(struct cache *c, const char *key)
{
    size_t i;
    if (find(c, key, &i))
        remove_at(c, i);
    c->deleted_at[hash_key(key) & (DELETED_SLOTS - 1)] = ++c->seq;
}

size_t cache_size(const struct cache *c)
{
    return c->count;
}
