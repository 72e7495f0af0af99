/* cache: a small in-process cache of byte strings by string key, kept
 * correct by PostgreSQL notifications.  Entries also expire after a TTL, as
 * a second line of defence.
 *
 * The race it guards against: a query reads the old row, a change commits
 * and its notification flushes the key, then the old answer arrives and is
 * stored.  cache_ticket() taken before the query and passed to cache_put()
 * makes such a put a no-op when that key was deleted in between, or the
 * cache cleared.  (A del also outdates the puts in flight of the few keys
 * whose hash shares its slot: a lost put, never a stale one.) */
#ifndef STUDYHUB_CORE_CACHE_H
#define STUDYHUB_CORE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache;

struct cache *cache_new(size_t max_entries, int ttl_s);
/* At most max_bytes of values at once (0: no limit): a put that would go
 * past it empties the cache first, as a put past max_entries does; a
 * value larger than max_bytes is not kept. */
void cache_limit_bytes(struct cache *c, size_t max_bytes);
void cache_free(struct cache *c);

/* The value (owned by the cache, valid until the next put, del or clear)
 * or NULL. */
const void *cache_get(struct cache *c, const char *key, size_t *len);
/* As cache_get, but the value stays valid past any put, del, clear or
 * cache_free until cache_release(value): a reply can send it by
 * reference instead of copying it. */
const void *cache_hold(struct cache *c, const char *key, size_t *len);
void cache_release(const void *held);
uint64_t cache_ticket(const struct cache *c);
/* Stores a copy, unless key was deleted or the cache cleared since ticket. */
void cache_put(struct cache *c, uint64_t ticket, const char *key,
               const void *value, size_t len);
void cache_del(struct cache *c, const char *key);
void cache_clear(struct cache *c);
/* Entries stored now, for tests and metrics. */
size_t cache_size(const struct cache *c);

#endif
