/* ptrmap: a map from pointers to pointers (open addressing, linear
 * probing, tombstones), for the tables keyed by an object's address that
 * the loop keeps: connections with a reply in flight, a connection's
 * guard.  Neither keys nor values are owned. */
#ifndef STUDYHUB_CORE_PTRMAP_H
#define STUDYHUB_CORE_PTRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct ptrmap {
    struct ptrmap_slot *slots;  /* owned; key NULL = empty */
    size_t cap;                 /* a power of two, or 0 */
    size_t used;                /* live entries and tombstones */
    size_t live;                /* live entries */
};

/* A zeroed struct is an empty map; ptrmap_cleanup frees its slots. */
void ptrmap_cleanup(struct ptrmap *m);
/* Adds key -> val (key and val not NULL).  Returns 1 when added, 0 when
 * key was there (its value is replaced), -1 when out of memory. */
int ptrmap_put(struct ptrmap *m, const void *key, void *val);
/* The value of key, or NULL. */
void *ptrmap_get(const struct ptrmap *m, const void *key);
/* Removes key; returns its value, or NULL when it was not there. */
void *ptrmap_del(struct ptrmap *m, const void *key);
static inline size_t ptrmap_count(const struct ptrmap *m) { return m->live; }

#endif
