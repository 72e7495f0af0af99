/* studies: the runner's view of studies (runner-api.md R1 and section 3):
 * GET /api/v1/studies/ (active and public, newest first, plus what the
 * requester may preview) and GET /api/v1/studies/{id}/ (active, plus any
 * study the requester holds read_study__details on, in any state).  Its
 * relationships.responses.links.related is the nested responses list the
 * runner fetches next.  salt, hash_digits and metadata are never shown. */
#ifndef STUDYHUB_DOMAIN_STUDIES_H
#define STUDYHUB_DOMAIN_STUDIES_H

struct router;
struct pg_pool;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int studies_routes(struct router *r);

/* The in-process cache of active study documents, kept by the
 * studies_changed notification.  Start after pg_pool_new; stop before
 * pg_pool_free. */
int studies_cache_start(struct pg_pool *pg);
void studies_cache_stop(void);

#endif
