/* sitepages: the public pages' text and the support form (issue 18,
 * points 5 and 6).
 *
 *   GET   /api/v1/site-pages/               every page (anyone)
 *   GET   /api/v1/site-pages/{slug}/        one page: title and Markdown
 *   PATCH /api/v1/site-pages/{slug}/        a site admin edits it
 *                                           (edit_site_pages; logged)
 *   GET   /api/v1/admin/site-page-edits/    the log: who changed which
 *                                           page, when
 *   POST  /api/v1/support/                  a message to SUPPORT_EMAIL
 *
 * The text is Markdown, stored and served as source, never as HTML: the
 * pages render it in the browser with markdown-it, raw HTML off, so no
 * markup an editor types reaches a page as markup.  A support message is
 * a row of the mail outbox (io/mail.h) to SUPPORT_EMAIL, rate-limited per
 * client address and per sender's email (SUPPORT_RATE_MAX per
 * LOGIN_RATE_WINDOW_S). */
#ifndef STUDYHUB_DOMAIN_SITEPAGES_H
#define STUDYHUB_DOMAIN_SITEPAGES_H

#include <jansson.h>

struct jsonapi_error;
struct router;

#define SITEPAGES_TITLE_MAX 200      /* characters, as the table's check */
#define SITEPAGES_BODY_MAX 100000    /* bytes, as the table's check */
#define SITEPAGES_NAME_MAX 200       /* support: the sender's name, bytes */
#define SITEPAGES_SUBJECT_MAX 200    /* support: the subject, bytes */
#define SITEPAGES_MESSAGE_MAX 5000   /* support: the message, bytes */

/* An edit's attributes: title and/or body, strings, nothing else.  On
 * success *title and *body point into attrs (NULL for the one not given)
 * and 0 is returned; else -1 with e (400). */
int sitepages_attrs_check(const json_t *attrs, const char **title, const char **body,
                          struct jsonapi_error *e);

/* A support message, its strings borrowed from the request's JSON. */
struct sitepages_support {
    const char *name;       /* "" when not given */
    const char *email;
    const char *subject;
    const char *message;
};
/* Checks the form's fields (name optional; email, subject and message
 * required, each within its limit; no control characters but line ends
 * in the message).  0, or -1 with e (400, pointer to the field). */
int sitepages_support_check(const json_t *fields, struct sitepages_support *out,
                            struct jsonapi_error *e);
/* The email's subject and body text (malloc'd; NULL when out of memory). */
char *sitepages_support_subject(const struct sitepages_support *s);
char *sitepages_support_body(const struct sitepages_support *s);

/* 0, or -1 when the router refused a route. */
int sitepages_routes(struct router *r);

#endif
