/* mail: the outbox sender.  Every email of the platform is a row of the
 * mail_outbox table (sql/020_accounts_mail.sql), inserted in the same
 * statement or transaction as the change it reports:
 *
 *     MAIL_INSERT_SQL "SELECT 'study_submitted', u.email, $1, $2 FROM ..."
 *
 * The sender of every server claims due rows (FOR UPDATE SKIP LOCKED,
 * under a lease of MAIL_LEASE_S), delivers each one and records the
 * outcome: through SMTP with libcurl when SMTP_URL is set, otherwise as
 * MAIL_DIR/<id>.eml.  Failures are retried with exponential backoff
 * (MAIL_RETRY_BASE_S doubled per attempt, at most 6 h) until
 * MAIL_MAX_ATTEMPTS; a permanent SMTP refusal of the address (501, 550-554)
 * gives up at once.  It wakes on NOTIFY mail_outbox (a trigger on insert),
 * on mail_sender_kick, and every MAIL_POLL_S.
 *
 * THE GUARANTEE, precisely
 * - .eml files: exactly once.  The file is written under a temporary name,
 *   fsynced, then hard-linked to <id>.eml, which fails if that name
 *   exists; a row claimed again after a crash between the link and the
 *   sent_at update finds its file and is only marked sent.  One file per
 *   outbox row, whatever crashes, restarts or servers there are.
 * - SMTP: exactly once unless a server dies (or loses PostgreSQL for
 *   longer than the lease) in the window between the relay's "250" to the
 *   message and the commit of sent_at, a few milliseconds.  Then the row's
 *   lease runs out and the message is sent again: at least once in that
 *   case, never lost.  A resend is byte-for-byte the same message, with
 *   the same Message-ID (<outbox.ID.CREATED_US@DOMAIN>) and Date, so
 *   receivers that deduplicate by Message-ID show it once.  A graceful
 *   stop (SIGTERM) stops claiming and waits for sends in flight and their
 *   updates (see mail_sender_busy), so restarts do not duplicate.
 *   SMTP has no way to ask a relay whether it already took a message, so
 *   nothing stronger is possible without the relay's help. */
#ifndef STUDYHUB_IO_MAIL_H
#define STUDYHUB_IO_MAIL_H

#include <stdbool.h>
#include <stddef.h>

struct app;
struct mail_sender;

/* The columns an enqueueing INSERT gives; follow with VALUES or SELECT of
 * (kind text, to_addr text, subject text, body_text text).  kind names
 * the email for logs and the X-Studyhub-Kind header ([a-z0-9_]). */
#define MAIL_INSERT_SQL "INSERT INTO mail_outbox (kind, to_addr, subject, body_text) "
/* The same for a body holding a secret (a single-use link): it is replaced
 * by a note in the table once sent. */
#define MAIL_INSERT_SECRET_SQL \
    "INSERT INTO mail_outbox (kind, to_addr, subject, body_text, redact_after_send) "

/* Reads SMTP_URL, MAIL_* from app->cfg; app->pg must exist.  Returns NULL
 * with a message on a bad setting or when out of memory. */
struct mail_sender *mail_sender_new(struct app *app, char *err, size_t errlen);
/* Creates MAIL_DIR if needed, LISTENs and starts the poll.  Returns 0, or
 * -1 (logged). */
int mail_sender_start(struct mail_sender *ms);
/* "Rows may be due now": claims from the loop soon after (never inside
 * this call).  For code that just committed an insert.  NULL is allowed. */
void mail_sender_kick(struct mail_sender *ms);
/* Stop claiming; sends in flight and their updates go on. */
void mail_sender_drain(struct mail_sender *ms);
/* Messages being sent or whose outcome is not yet saved (0: nothing lost
 * or duplicated by exiting now).  NULL counts as 0. */
unsigned mail_sender_busy(const struct mail_sender *ms);
/* Aborts transfers (their rows are sent again once the lease ends) and
 * frees everything; queries still out are finished by pg_pool_free.
 * Call once the loop has stopped (the LISTEN registration cannot be
 * undone) and before pg_pool_free.  NULL is allowed. */
void mail_sender_free(struct mail_sender *ms);

/* The RFC 5322 message of one outbox row, CRLF line ends, as sent and as
 * written to <id>.eml (exposed for tests).  Returns a malloc'd buffer and
 * its length in *len, or NULL with a reason in err when the row cannot be
 * sent as is (bad address): that is permanent. */
struct mail_fields {
    const char *from;        /* MAIL_FROM, header form */
    const char *to;          /* one address */
    const char *subject;     /* UTF-8; CR/LF become spaces */
    const char *body;        /* UTF-8 text; any line ends */
    const char *kind;
    const char *date;        /* RFC 5322 date */
    const char *message_id;  /* with angle brackets */
};
char *mail_render(const struct mail_fields *f, size_t *len, char *err,
                  size_t errlen);
/* True when addr is one plain address (local@domain, no spaces, brackets,
 * commas or control characters, at most 254 bytes). */
bool mail_addr_ok(const char *addr);

#endif
