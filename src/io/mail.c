/* mail: claims due rows of mail_outbox under a lease and delivers them by
 * SMTP (through io/fetch, the one curl multi on the loop; at most
 * MAIL_BATCH at once) or as MAIL_DIR/<id>.eml, recording each
 * outcome; see include/studyhub/io/mail.h for the guarantee. */
#include "studyhub/io/mail.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/io/fetch.h"
#include "studyhub/io/pg.h"

/* Longest backoff between attempts of one email. */
#define MAIL_RETRY_MAX_S (6 * 3600)
/* A lease must outlast a whole SMTP attempt by this much, so a live
 * sender never sees its row claimed by another. */
#define MAIL_LEASE_MARGIN_S 10
/* Longest stored last_error. */
#define MAIL_ERROR_MAX 300
/* An outcome that could not be saved is tried again this soon. */
#define MAIL_ACK_RETRY_S 1

/* ------------------------------------------------------------ statements */

/* $1 owner, $2 lease seconds, $3 how many.  Each claim counts as an
 * attempt, so a row that kills its server every time still runs out. */
static const struct pg_stmt mail_claim_stmt = {
    "mail_claim",
    "UPDATE mail_outbox m"
    "   SET lease_owner = $1, lease_until = now() + make_interval(secs => $2::int),"
    "       attempts = m.attempts + 1"
    " WHERE m.id IN (SELECT id FROM mail_outbox"
    "                 WHERE sent_at IS NULL AND failed_at IS NULL"
    "                   AND send_after <= now()"
    "                   AND (lease_until IS NULL OR lease_until < now())"
    "                 ORDER BY send_after, id LIMIT $3::int"
    "                 FOR UPDATE SKIP LOCKED)"
    " RETURNING m.id, m.kind, m.to_addr, m.subject, m.body_text, m.attempts,"
    "   to_char(m.created_at AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS \"+0000\"'),"
    "   (extract(epoch FROM m.created_at) * 1000000)::bigint",
};
enum { CC_ID, CC_KIND, CC_TO, CC_SUBJECT, CC_BODY, CC_ATTEMPTS, CC_DATE, CC_CREATED_US };

/* Sent: whoever holds the lease now, the message went out. */
static const struct pg_stmt mail_sent_stmt = {
    "mail_sent",
    "UPDATE mail_outbox SET sent_at = now(), message_id = $2, last_error = NULL,"
    "       lease_owner = NULL, lease_until = NULL,"
    "       body_text = CASE WHEN redact_after_send"
    "                   THEN '(removed once sent: it held a single-use link)'"
    "                   ELSE body_text END"
    " WHERE id = $1::bigint AND sent_at IS NULL",
};

/* Not sent: retry after $3 s, or give up ($4).  Only while we still hold
 * the lease: after it ran out the row may be another server's. */
static const struct pg_stmt mail_unsent_stmt = {
    "mail_unsent",
    "UPDATE mail_outbox SET last_error = $2, lease_owner = NULL, lease_until = NULL,"
    "       send_after = now() + make_interval(secs => $3::int),"
    "       failed_at = CASE WHEN $4::boolean THEN now() END"
    " WHERE id = $1::bigint AND sent_at IS NULL AND lease_owner = $5",
};

/* ------------------------------------------------------------ types */

/* Where one claimed message is. */
enum mail_msg_state {
    MSG_SENDING,     /* SMTP transfer running */
    MSG_ACKING,      /* outcome known; its UPDATE is out */
    MSG_ACK_WAIT,    /* that UPDATE failed (PostgreSQL away): again at the
                        next tick */
};
static const char *const mail_msg_state_names[] = { "sending", "acking", "ack_wait" };

enum mail_outcome { OUT_SENT, OUT_RETRY, OUT_FAILED };

struct mail_sender;

struct mail_msg {
    struct mail_sender *ms;       /* borrowed: the sender owning this */
    struct mail_msg *next;        /* in ms->msgs */
    enum mail_msg_state state;
    enum mail_outcome outcome;    /* valid from MSG_ACKING on */
    int64_t id;                   /* mail_outbox.id */
    int attempts;                 /* including this one */
    char *data;                   /* owned: the rendered message */
    size_t len;                   /* bytes of data */
    char to[256];                 /* envelope recipient */
    char message_id[192];
    char error[MAIL_ERROR_MAX];   /* why it was not sent */
    struct fetch_req *req;        /* the SMTP transfer in flight, or NULL */
};

struct mail_sender {
    struct app *app;              /* borrowed */
    const struct config *cfg;     /* borrowed */
    struct event *tick;           /* owned: the MAIL_POLL_S poll */
    struct event *kick;           /* owned: "claim now", made active */
    bool smtp;                    /* SMTP_URL is set (else .eml files) */
    struct mail_msg *msgs;        /* owned list: claimed, not yet settled */
    unsigned nmsgs;               /* entries in msgs */
    struct pg_holder held;        /* the queries out that carry ms or a msg:
                                     once freed, ms goes after the last */
    bool claiming;                /* the claim query is out */
    long claim_limit;             /* rows that claim asked for */
    bool again;                   /* woken while claiming: claim once more */
    bool draining;                /* no more claims */
    bool listening;               /* pg_pool_listen registered */
    long use_ssl;                 /* CURLUSESSL_* for smtp:// */
    char owner[160];              /* lease_owner: host/pid/random */
    char domain[128];             /* of Message-IDs */
    char envelope_from[256];      /* MAIL FROM address */
    char dir[1024];               /* MAIL_DIR */
};

/* ------------------------------------------------------------ helpers */

static void msg_set_state(struct mail_msg *m, enum mail_msg_state s)
{
    log_debug("mail: %lld: %s -> %s", (long long)m->id,
              mail_msg_state_names[m->state], mail_msg_state_names[s]);
    m->state = s;
}

static void msg_free(struct mail_msg *m)
{
    if (!m)
        return;
    free(m->data);
    free(m);
}

/* Takes m off ms->msgs and frees it. */
static void msg_remove(struct mail_msg *m)
{
    struct mail_sender *ms = m->ms;
    for (struct mail_msg **pp = &ms->msgs; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            ms->nmsgs--;
            break;
        }
    }
    msg_free(m);
}

static void sender_destroy(struct mail_sender *ms)
{
    while (ms->msgs) {
        struct mail_msg *m = ms->msgs;
        ms->msgs = m->next;
        msg_free(m);
    }
    pg_holder_cleanup(&ms->held);
    free(ms);
}

static void sender_destroy_held(void *ms)
{
    sender_destroy(ms);
}

bool mail_addr_ok(const char *addr)
{
    const char *at = NULL;
    size_t n = 0;
    if (!addr)
        return false;
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++, n++) {
        if (*p <= ' ' || *p == 0x7f || strchr("<>,;:\"()[]\\", *p))
            return false;
        if (*p == '@') {
            if (at)
                return false;
            at = (const char *)p;
        }
    }
    return at && at != addr && at[1] && n <= 254;
}

/* The address inside "Name <addr>", or the whole of from. */
static bool envelope_of(const char *from, char *out, size_t outlen)
{
    const char *lt = strrchr(from, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    size_t n;
    if (lt && gt) {
        n = (size_t)(gt - lt - 1);
        from = lt + 1;
    } else {
        n = strlen(from);
    }
    if (n == 0 || n >= outlen)
        return false;
    memcpy(out, from, n);
    out[n] = '\0';
    return mail_addr_ok(out);
}

/* ------------------------------------------------------------ rendering */

/* A growing buffer; on allocation failure ok goes false and stays so. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool ok;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (!b->ok)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->ok = false;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* Base64 of n bytes (no line breaks) appended to b. */
static void sb_base64(struct sbuf *b, const unsigned char *in, size_t n)
{
    char out[4 * 64 / 3 + 8];
    while (n > 0) {
        size_t take = n > 48 ? 48 : n;
        int k = EVP_EncodeBlock((unsigned char *)out, in, (int)take);
        sb_add(b, out, (size_t)k);
        in += take;
        n -= take;
    }
}

/* Subject: CR/LF become spaces; non-ASCII text becomes RFC 2047
 * encoded-words of at most 45 input bytes each (never splitting a UTF-8
 * sequence), folded onto continuation lines. */
static void render_subject(struct sbuf *b, const char *subject)
{
    char *s = strdup(subject);
    if (!s) {
        b->ok = false;
        return;
    }
    for (char *p = s; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == '\t')
            *p = ' ';
    sb_str(b, "Subject: ");
    if (is_ascii(s)) {
        sb_str(b, s);
    } else {
        size_t n = strlen(s), i = 0;
        bool first = true;
        while (i < n) {
            size_t take = n - i > 45 ? 45 : n - i;
            /* Back off to the start of a UTF-8 sequence. */
            while (i + take < n && take > 1 &&
                   ((unsigned char)s[i + take] & 0xC0) == 0x80)
                take--;
            if (!first)
                sb_str(b, "\r\n ");
            sb_str(b, "=?UTF-8?B?");
            sb_base64(b, (const unsigned char *)s + i, take);
            sb_str(b, "?=");
            first = false;
            i += take;
        }
    }
    sb_str(b, "\r\n");
    free(s);
}

/* The body with every line end made CRLF, ending in CRLF. */
static bool body_crlf(const char *body, struct sbuf *out, bool *long_lines)
{
    size_t col = 0;
    *long_lines = false;
    for (const char *p = body; *p; p++) {
        if (*p == '\r' && p[1] == '\n')
            continue;
        if (*p == '\r' || *p == '\n') {
            sb_add(out, "\r\n", 2);
            col = 0;
            continue;
        }
        sb_add(out, p, 1);
        if (++col > 998)
            *long_lines = true;
    }
    if (out->len < 2 || memcmp(out->p + out->len - 2, "\r\n", 2) != 0)
        sb_add(out, "\r\n", 2);
    return out->ok;
}

char *mail_render(const struct mail_fields *f, size_t *len, char *err,
                  size_t errlen)
{
    struct sbuf b = { .ok = true }, body = { .ok = true };
    char kind[64];
    bool long_lines;
    size_t k = 0;

    if (!mail_addr_ok(f->to)) {
        snprintf(err, errlen, "invalid recipient address");
        return NULL;
    }
    /* The kind only as a safe token in a header. */
    for (const char *p = f->kind ? f->kind : ""; *p && k < sizeof kind - 1; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.')
            kind[k++] = c;
    }
    kind[k] = '\0';

    sb_str(&b, "Date: ");
    sb_str(&b, f->date);
    sb_str(&b, "\r\nFrom: ");
    sb_str(&b, f->from);
    sb_str(&b, "\r\nTo: ");
    sb_str(&b, f->to);
    sb_str(&b, "\r\n");
    render_subject(&b, f->subject);
    sb_str(&b, "Message-ID: ");
    sb_str(&b, f->message_id);
    sb_str(&b, "\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n");
    if (!body_crlf(f->body, &body, &long_lines))
        goto oom;
    if (is_ascii(body.p) && !long_lines) {
        sb_str(&b, "Content-Transfer-Encoding: 7bit\r\n");
    } else {
        /* 8-bit text needs 8BITMIME all the way; base64 needs nothing. */
        sb_str(&b, "Content-Transfer-Encoding: base64\r\n");
    }
    sb_str(&b, "Auto-Submitted: auto-generated\r\n");
    if (kind[0]) {
        sb_str(&b, "X-Studyhub-Kind: ");
        sb_str(&b, kind);
        sb_str(&b, "\r\n");
    }
    sb_str(&b, "\r\n");
    if (is_ascii(body.p) && !long_lines) {
        sb_add(&b, body.p, body.len);
    } else {
        const unsigned char *p = (const unsigned char *)body.p;
        size_t n = body.len;
        while (n > 0) {                      /* 76-character lines */
            size_t take = n > 57 ? 57 : n;
            sb_base64(&b, p, take);
            sb_str(&b, "\r\n");
            p += take;
            n -= take;
        }
    }
    free(body.p);
    if (!b.ok)
        goto oom;
    *len = b.len;
    return b.p;
oom:
    free(body.p);
    free(b.p);
    snprintf(err, errlen, "out of memory");
    return NULL;
}

/* ------------------------------------------------------------ outcomes */

static void ack_send(struct mail_msg *m);
static void claim(struct mail_sender *ms);

/* PostgreSQL could not take an outcome: keep it and try again soon (not
 * at the next poll, which may be after a drain gave up). */
static void ack_later(struct mail_msg *m)
{
    struct mail_sender *ms = m->ms;
    struct timeval tv = { MAIL_ACK_RETRY_S, 0 };
    msg_set_state(m, MSG_ACK_WAIT);
    if (!evtimer_pending(ms->kick, NULL))
        evtimer_add(ms->kick, &tv);
}

static void ack_done(PGresult *res, void *arg)
{
    struct mail_msg *m = arg;
    struct mail_sender *ms = m->ms;

    if (!res || !pg_ok(res)) {
        log_warn("mail: %lld: cannot record the outcome (%s); retrying",
                 (long long)m->id, res ? PQresultErrorMessage(res) : "database unavailable");
        ack_later(m);
        return;
    }
    if (PQcmdTuples(res)[0] == '0' && m->outcome != OUT_SENT)
        log_warn("mail: %lld: lease lost before its outcome was saved",
                 (long long)m->id);
    msg_remove(m);
    if (ms->again)                    /* a claim waited for room */
        claim(ms);
}

/* The retry delay after attempt n: base * 2^(n-1), capped. */
static long backoff_s(const struct mail_sender *ms, int attempts)
{
    long d = ms->cfg->mail_retry_base_s;
    for (int i = 1; i < attempts && d < MAIL_RETRY_MAX_S; i++)
        d *= 2;
    return d > MAIL_RETRY_MAX_S ? MAIL_RETRY_MAX_S : d;
}

static void ack_send(struct mail_msg *m)
{
    struct mail_sender *ms = m->ms;
    char id[24], delay[24];
    int rc;

    msg_set_state(m, MSG_ACKING);
    snprintf(id, sizeof id, "%lld", (long long)m->id);
    if (m->outcome == OUT_SENT) {
        const char *p[2] = { id, m->message_id };
        rc = pg_exec_held(ms->app->pg, &ms->held, &mail_sent_stmt, 2, p, ack_done, m);
    } else {
        snprintf(delay, sizeof delay, "%ld", backoff_s(ms, m->attempts));
        const char *p[5] = { id, m->error, delay,
                             m->outcome == OUT_FAILED ? "true" : "false",
                             ms->owner };
        rc = pg_exec_held(ms->app->pg, &ms->held, &mail_unsent_stmt, 5, p, ack_done, m);
    }
    if (rc != 0)
        ack_later(m);
}

/* The outcome of one attempt, then its UPDATE. */
static void msg_settle(struct mail_msg *m, enum mail_outcome outcome,
                       const char *error)
{
    struct mail_sender *ms = m->ms;

    if (outcome != OUT_SENT && m->attempts >= ms->cfg->mail_max_attempts)
        outcome = OUT_FAILED;
    m->outcome = outcome;
    snprintf(m->error, sizeof m->error, "%s", error ? error : "");
    /* Ids only: addresses are personal data and the row has them. */
    if (outcome == OUT_SENT)
        log_info("mail: %lld sent (attempt %d)", (long long)m->id, m->attempts);
    else
        log_warn("mail: %lld %s (attempt %d): %s", (long long)m->id,
                 outcome == OUT_FAILED ? "given up" : "will be retried",
                 m->attempts, m->error);
    ack_send(m);
}

/* ------------------------------------------------------------ .eml files */

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Writes MAIL_DIR/<id>.eml exactly once: temporary file, fsync, link to
 * the final name (EEXIST: an earlier attempt already delivered it), fsync
 * of the folder so the name survives a power cut before sent_at does.
 * Small synchronous file I/O on the loop, as the design allows. */
static void deliver_file(struct mail_msg *m)
{
    struct mail_sender *ms = m->ms;
    char tmp[1200], final[1200], err[MAIL_ERROR_MAX];
    char rnd[13];
    int fd = -1;
    bool already = false;

    util_random_hex(6, rnd);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%lld-%ld-%s", ms->dir, (long long)m->id,
             (long)getpid(), rnd);
    snprintf(final, sizeof final, "%s/%lld.eml", ms->dir, (long long)m->id);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, sizeof err, "cannot create %.200s: %s", tmp, strerror(errno));
        goto fail;
    }
    for (size_t off = 0; off < m->len;) {
        ssize_t w = write(fd, m->data + off, m->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, sizeof err, "cannot write %.200s: %s", tmp, strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        snprintf(err, sizeof err, "cannot write %.200s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (link(tmp, final) != 0) {
        if (errno != EEXIST) {
            snprintf(err, sizeof err, "cannot link %.200s: %s", final, strerror(errno));
            goto fail;
        }
        already = true;
    }
    unlink(tmp);
    if (fsync_dir(ms->dir) != 0)
        log_warn("mail: fsync of %s: %s", ms->dir, strerror(errno));
    if (already)
        log_info("mail: %lld: %s already exists (delivered before a restart)",
                 (long long)m->id, final);
    msg_settle(m, OUT_SENT, NULL);
    return;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    msg_settle(m, OUT_RETRY, err);
}

/* ------------------------------------------------------------ SMTP */

/* Refusals that are about this message or address, not the relay's
 * state: no point in trying again. */
static bool smtp_permanent(long code)
{
    return code == 501 || (code >= 550 && code <= 554);
}

static void smtp_done(struct fetch_req *req, const struct fetch_result *res, void *arg)
{
    struct mail_msg *m = arg;
    char err[MAIL_ERROR_MAX];

    m->req = NULL;
    if (!res->error) {
        msg_settle(m, OUT_SENT, NULL);
        return;
    }
    snprintf(err, sizeof err, "SMTP %d: %s", res->status, res->error);
    msg_settle(m, smtp_permanent(res->status) ? OUT_FAILED : OUT_RETRY, err);
}

/* Through the shared outbound client (io/fetch), one transfer per message:
 * the outbox's own lease and attempts decide about retries. */
static void deliver_smtp(struct mail_msg *m)
{
    struct mail_sender *ms = m->ms;
    const struct config *cfg = ms->cfg;
    char rcpt[300], from[300];
    const char *rcpts[2] = { rcpt, NULL };

    snprintf(rcpt, sizeof rcpt, "<%s>", m->to);
    snprintf(from, sizeof from, "<%s>", ms->envelope_from);
    struct fetch_opts o = {
        .method = "SMTP", .url = cfg->smtp_url, .body = m->data, .body_len = m->len,
        .mail_from = from, .mail_rcpt = rcpts, .smtp_use_ssl = ms->use_ssl,
        .connect_timeout_ms = (cfg->mail_smtp_timeout_s < 10 ? cfg->mail_smtp_timeout_s : 10L) * 1000,
        .timeout_ms = cfg->mail_smtp_timeout_s * 1000, .max_attempts = 1,
        .done = smtp_done, .arg = m,
    };
    if (!ms->app->fetch || !(m->req = fetch_submit(ms->app->fetch, &o)))
        msg_settle(m, OUT_RETRY, "cannot start the SMTP transfer");
}

/* ------------------------------------------------------------ claiming */

/* One claimed row: render it, then deliver (or give up on it). */
static void msg_start(struct mail_sender *ms, const PGresult *res, int row)
{
    struct mail_msg *m = calloc(1, sizeof *m);
    char err[MAIL_ERROR_MAX];

    if (!m) {
        log_error("mail: out of memory; the row is retried when its lease ends");
        return;
    }
    m->ms = ms;
    m->state = MSG_SENDING;
    m->id = strtoll(PQgetvalue(res, row, CC_ID), NULL, 10);
    m->attempts = atoi(PQgetvalue(res, row, CC_ATTEMPTS));
    snprintf(m->to, sizeof m->to, "%s", PQgetvalue(res, row, CC_TO));
    snprintf(m->message_id, sizeof m->message_id, "<outbox.%lld.%s@%s>",
             (long long)m->id, PQgetvalue(res, row, CC_CREATED_US), ms->domain);
    m->next = ms->msgs;
    ms->msgs = m;
    ms->nmsgs++;

    if (m->attempts > ms->cfg->mail_max_attempts) {
        /* Earlier claims ended without an outcome (their servers died). */
        snprintf(err, sizeof err, "gave up after %d attempts (the last ones "
                 "were interrupted)", m->attempts - 1);
        msg_settle(m, OUT_FAILED, err);
        return;
    }
    struct mail_fields f = {
        .from = ms->cfg->mail_from,
        .to = PQgetvalue(res, row, CC_TO),
        .subject = PQgetvalue(res, row, CC_SUBJECT),
        .body = PQgetvalue(res, row, CC_BODY),
        .kind = PQgetvalue(res, row, CC_KIND),
        .date = PQgetvalue(res, row, CC_DATE),
        .message_id = m->message_id,
    };
    m->data = mail_render(&f, &m->len, err, sizeof err);
    if (!m->data) {
        msg_settle(m, strcmp(err, "out of memory") ? OUT_FAILED : OUT_RETRY, err);
        return;
    }
    if (ms->smtp)
        deliver_smtp(m);
    else
        deliver_file(m);
}

static void claim_done(PGresult *res, void *arg)
{
    struct mail_sender *ms = arg;

    ms->claiming = false;
    if (!res || !pg_ok(res)) {
        if (res)
            log_error("mail: claim failed: %s", PQresultErrorMessage(res));
        return;                       /* the next tick tries again */
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        msg_start(ms, res, i);
    /* A full batch may mean more are due; a wake-up during the claim may
     * be for rows it did not see. */
    if (n >= ms->claim_limit || ms->again) {
        ms->again = false;
        claim(ms);
    }
}

static void claim(struct mail_sender *ms)
{
    char lease[24], limit[24];
    long room = ms->cfg->mail_batch - (long)ms->nmsgs;

    if (ms->draining || pg_holder_going(&ms->held))
        return;
    if (ms->claiming) {
        ms->again = true;
        return;
    }
    if (room <= 0) {
        ms->again = true;             /* the next settled message claims */
        return;
    }
    snprintf(lease, sizeof lease, "%ld", ms->cfg->mail_lease_s);
    snprintf(limit, sizeof limit, "%ld", room);
    const char *p[3] = { ms->owner, lease, limit };
    if (pg_exec_held(ms->app->pg, &ms->held, &mail_claim_stmt, 3, p, claim_done, ms) != 0)
        return;
    ms->claiming = true;
    ms->claim_limit = room;
}

/* The poll and every wake-up: re-send outcomes that could not be saved,
 * then claim. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct mail_sender *ms = arg;
    for (struct mail_msg *m = ms->msgs, *next; m; m = next) {
        next = m->next;
        if (m->state == MSG_ACK_WAIT)
            ack_send(m);
    }
    claim(ms);
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
    mail_sender_kick(arg);
}

/* ------------------------------------------------------------ lifecycle */

struct mail_sender *mail_sender_new(struct app *app, char *err, size_t errlen)
{
    const struct config *cfg = app->cfg;
    struct mail_sender *ms = calloc(1, sizeof *ms);
    char host[64] = "";
    char rnd[13];

    if (!ms) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ms->app = app;
    ms->cfg = cfg;
    if (pg_holder_init(&ms->held, app->base, sender_destroy_held, ms) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (strchr(cfg->mail_from, '\r') || strchr(cfg->mail_from, '\n') ||
        !is_ascii(cfg->mail_from) ||
        !envelope_of(cfg->mail_from, ms->envelope_from, sizeof ms->envelope_from)) {
        snprintf(err, errlen, "MAIL_FROM: '%s' is not an address or Name <address>",
                 cfg->mail_from);
        goto fail;
    }
    snprintf(ms->domain, sizeof ms->domain, "%s", strchr(ms->envelope_from, '@') + 1);
    if (cfg->mail_lease_s < cfg->mail_smtp_timeout_s + MAIL_LEASE_MARGIN_S) {
        snprintf(err, errlen, "MAIL_LEASE_S (%ld) must exceed MAIL_SMTP_TIMEOUT_S (%ld)"
                 " by at least %d s", cfg->mail_lease_s, cfg->mail_smtp_timeout_s,
                 MAIL_LEASE_MARGIN_S);
        goto fail;
    }
    if (snprintf(ms->dir, sizeof ms->dir, "%s", cfg->mail_dir) >= (int)sizeof ms->dir ||
        !ms->dir[0]) {
        snprintf(err, errlen, "MAIL_DIR: empty or too long");
        goto fail;
    }
    gethostname(host, sizeof host - 1);
    util_random_hex(6, rnd);
    snprintf(ms->owner, sizeof ms->owner, "%s/%ld/%s", host[0] ? host : "localhost",
             (long)getpid(), rnd);

    ms->tick = event_new(app->base, -1, EV_PERSIST, on_tick, ms);
    ms->kick = event_new(app->base, -1, 0, on_tick, ms);
    if (!ms->tick || !ms->kick) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->smtp_url[0]) {
        ms->smtp = true;
        /* STARTTLS: required, except on loopback where test sinks and local
         * relays have no certificate (auto), or as SMTP_STARTTLS says. */
        const char *mode = cfg->smtp_starttls;
        if (strcmp(mode, "require") == 0) {
            ms->use_ssl = CURLUSESSL_ALL;
        } else if (strcmp(mode, "try") == 0) {
            ms->use_ssl = CURLUSESSL_TRY;
        } else if (strcmp(mode, "off") == 0) {
            ms->use_ssl = CURLUSESSL_NONE;
        } else {
            char *h = NULL;
            CURLU *u = curl_url();
            bool loopback = false;
            if (u && curl_url_set(u, CURLUPART_URL, cfg->smtp_url, 0) == CURLUE_OK &&
                curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h)
                loopback = strncmp(h, "127.", 4) == 0 || strcmp(h, "[::1]") == 0 ||
                           strcmp(h, "localhost") == 0;
            curl_free(h);
            curl_url_cleanup(u);
            ms->use_ssl = loopback ? CURLUSESSL_TRY : CURLUSESSL_ALL;
        }
    }
    return ms;
fail:
    mail_sender_free(ms);
    return NULL;
}

int mail_sender_start(struct mail_sender *ms)
{
    struct timeval tv = { ms->cfg->mail_poll_s, 0 };

    if (!ms->smtp && mkdir(ms->dir, 0750) != 0 && errno != EEXIST) {
        /* mkdir -p for a nested default like var/mail. */
        char path[sizeof ms->dir];
        snprintf(path, sizeof path, "%s", ms->dir);
        for (char *p = path + 1; *p; p++) {
            if (*p != '/')
                continue;
            *p = '\0';
            if (mkdir(path, 0750) != 0 && errno != EEXIST)
                break;
            *p = '/';
        }
        if (mkdir(ms->dir, 0750) != 0 && errno != EEXIST) {
            log_error("mail: cannot create MAIL_DIR %s: %s", ms->dir, strerror(errno));
            return -1;
        }
    }
    if (pg_pool_listen(ms->app->pg, "mail_outbox", on_notify, ms) == 0)
        ms->listening = true;
    else
        log_warn("mail: cannot LISTEN on mail_outbox; polling every %ld s",
                 ms->cfg->mail_poll_s);
    if (evtimer_add(ms->tick, &tv) != 0)
        return -1;
    log_info("mail: sending %s every %ld s and on notification",
             ms->smtp ? "through SMTP" : "to .eml files", ms->cfg->mail_poll_s);
    mail_sender_kick(ms);
    return 0;
}

void mail_sender_kick(struct mail_sender *ms)
{
    if (ms && !ms->draining && !pg_holder_going(&ms->held))
        event_active(ms->kick, 0, 0);
}

void mail_sender_drain(struct mail_sender *ms)
{
    if (ms)
        ms->draining = true;
}

unsigned mail_sender_busy(const struct mail_sender *ms)
{
    return ms ? ms->nmsgs : 0;
}

void mail_sender_free(struct mail_sender *ms)
{
    if (!ms)
        return;
    /* Transfers in flight are abandoned: their rows keep the lease and are
     * sent again once it ends. */
    for (struct mail_msg *m = ms->msgs, *next; m; m = next) {
        next = m->next;
        if (m->state != MSG_SENDING || !m->req)
            continue;
        fetch_cancel(m->req);         /* no callback of it runs after this */
        m->req = NULL;
        msg_remove(m);
    }
    if (ms->tick)
        event_free(ms->tick);
    if (ms->kick)
        event_free(ms->kick);
    ms->tick = ms->kick = NULL;
    /* Now, or on a later turn once the last query out is back. */
    pg_holder_release(&ms->held);
}
