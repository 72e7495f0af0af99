/* ptrmap: open addressing keyed by address.  Kept at most half full
 * (tombstones included), so a probe ends soon; the hash mixes the
 * address bits because heap pointers share their low and high bits. */
#include "studyhub/core/ptrmap.h"

#include <stdint.h>
#include <stdlib.h>

struct ptrmap_slot {
    const void *key;    /* NULL: empty; TOMBSTONE: deleted */
    void *val;
};

static const char tombstone_mark;
#define TOMBSTONE ((const void *)&tombstone_mark)

static size_t slot_of(const void *p, size_t cap)
{
    uint64_t x = (uintptr_t)p;

    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 7) & (cap - 1);
}

void ptrmap_cleanup(struct ptrmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->used = m->live = 0;
}

static int grow(struct ptrmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct ptrmap_slot *slots;

    /* Mostly tombstones: rehash at the same size instead of doubling. */
    if (m->cap && m->live * 4 < m->cap)
        cap = m->cap;
    slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        const void *k = m->slots[i].key;

        if (k && k != TOMBSTONE) {
            size_t j = slot_of(k, cap);

            while (slots[j].key)
                j = (j + 1) & (cap - 1);
            slots[j] = m->slots[i];
        }
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->live;
    return 0;
}

int ptrmap_put(struct ptrmap *m, const void *key, void *val)
{
    size_t i, free_slot = SIZE_MAX;

    if ((m->used + 1) * 2 > m->cap && grow(m) < 0)
        return -1;
    for (i = slot_of(key, m->cap); m->slots[i].key; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key) {
            m->slots[i].val = val;
            return 0;
        }
        if (m->slots[i].key == TOMBSTONE && free_slot == SIZE_MAX)
            free_slot = i;
    }
    if (free_slot != SIZE_MAX)
        i = free_slot;
    else
        m->used++;
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->live++;
    return 1;
}

static struct ptrmap_slot *find(const struct ptrmap *m, const void *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = slot_of(key, m->cap); m->slots[i].key; i = (i + 1) & (m->cap - 1))
        if (m->slots[i].key == key)
            return &m->slots[i];
    return NULL;
}

void *ptrmap_get(const struct ptrmap *m, const void *key)
{
    struct ptrmap_slot *s = find(m, key);

    return s ? s->val : NULL;
}

void *ptrmap_del(struct ptrmap *m, const void *key)
{
    struct ptrmap_slot *s = find(m, key);
    void *val;

    if (!s)
        return NULL;
    val = s->val;
    s->key = TOMBSTONE;
    s->val = NULL;
    m->live--;
    return val;
}
