/* eligibility: age range, criteria expression and participation rules of a
 * child for a study, and the hashed child id.  Pure functions (no I/O, no
 * allocation), so they are unit-tested directly (tests/unit/check_eligibility.c). */
#include "studyhub/domain/eligibility.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long eligibility_limit_days(int years, int months, int days)
{
    return (long)years * 365 + (long)months * 30 + (long)days;
}

long eligibility_age_difference(long age_days, const struct eligibility_ages *a)
{
    long min = eligibility_limit_days(a->min_years, a->min_months, a->min_days);
    long max = eligibility_limit_days(a->max_years, a->max_months, a->max_days);

    /* Upstream's child_in_age_range_for_study_days_difference: the minimum
     * is checked first, and an age equal to a limit gives 0 (in range). */
    if (age_days <= min)
        return age_days - min;
    if (age_days >= max)
        return age_days - max;
    return 0;
}

unsigned eligibility_flags(long age_days, const struct eligibility_ages *a,
                           bool criteria_met, bool participation_ok)
{
    unsigned flags = 0;
    long diff = eligibility_age_difference(age_days, a);

    if (diff > 0)
        flags |= ELIGIBILITY_TOO_OLD;
    else if (diff < 0)
        flags |= ELIGIBILITY_TOO_YOUNG;
    if (!criteria_met)
        flags |= ELIGIBILITY_CRITERIA;
    if (!participation_ok)
        flags |= ELIGIBILITY_PARTICIPATION;
    return flags;
}

const char *eligibility_pg_array(unsigned flags, char *buf, size_t len)
{
    /* Alphabetical, as upstream returns sorted(list(eligibility_set)). */
    static const struct { unsigned flag; const char *name; } names[] = {
        { ELIGIBILITY_CRITERIA, "Ineligible_CriteriaExpression" },
        { ELIGIBILITY_PARTICIPATION, "Ineligible_Participation" },
        { ELIGIBILITY_TOO_OLD, "Ineligible_TooOld" },
        { ELIGIBILITY_TOO_YOUNG, "Ineligible_TooYoung" },
    };
    size_t used = 0;

    if (!flags) {
        snprintf(buf, len, "{Eligible}");
        return buf;
    }
    used = (size_t)snprintf(buf, len, "{");
    for (size_t i = 0; i < sizeof names / sizeof names[0] && used < len; i++) {
        if (flags & names[i].flag)
            used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                     used > 1 ? "," : "", names[i].name);
    }
    if (used < len)
        snprintf(buf + used, len - used, "}");
    return buf;
}

/* ---- criteria expressions ------------------------------------------------ */

enum tok_kind { TK_END, TK_LPAREN, TK_RPAREN, TK_CMP, TK_INT, TK_WORD, TK_ERROR };

enum cmp_op { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };

/* A recursive-descent parser that evaluates as it goes: no tree, no
 * allocation.  Depth is bounded so a hostile expression cannot exhaust
 * the stack. */
struct crit {
    const char *p;                          /* next unread character (borrowed) */
    const struct eligibility_child *child;  /* borrowed */
    enum tok_kind kind;                     /* current token */
    const char *tok;                        /* its text (borrowed, not terminated) */
    size_t toklen;
    enum cmp_op cmp;                        /* when kind == TK_CMP */
    long num;                               /* when kind == TK_INT */
    int depth;
    char *err;                              /* borrowed */
    size_t errlen;
    bool failed;
};

#define CRIT_MAX_DEPTH 64

static bool word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '/';
}

static void crit_fail(struct crit *c, const char *what)
{
    if (!c->failed && c->err && c->errlen)
        snprintf(c->err, c->errlen, "%s near \"%.20s\"", what, c->tok ? c->tok : "");
    c->failed = true;
}

static void crit_next(struct crit *c)
{
    const char *p = c->p;

    while (isspace((unsigned char)*p))
        p++;
    c->tok = p;
    c->toklen = 1;
    if (!*p) {
        c->kind = TK_END;
        c->toklen = 0;
    } else if (*p == '(' || *p == ')') {
        c->kind = *p == '(' ? TK_LPAREN : TK_RPAREN;
        p++;
    } else if (*p == '=' || *p == '<' || *p == '>' || (*p == '!' && p[1] == '=')) {
        c->kind = TK_CMP;
        if (*p == '!') {
            c->cmp = CMP_NE;
            p += 2;
        } else if (*p == '=') {
            c->cmp = CMP_EQ;
            p++;
        } else {
            bool lt = *p == '<';
            p++;
            if (*p == '=') {
                c->cmp = lt ? CMP_LE : CMP_GE;
                p++;
            } else {
                c->cmp = lt ? CMP_LT : CMP_GT;
            }
        }
        c->toklen = (size_t)(p - c->tok);
    } else if (word_char(*p)) {
        const char *start = p;
        bool digits = true;
        while (word_char(*p)) {
            digits = digits && isdigit((unsigned char)*p);
            p++;
        }
        c->toklen = (size_t)(p - start);
        c->kind = TK_WORD;
        if (digits) {
            errno = 0;
            c->num = strtol(start, NULL, 10);
            c->kind = errno ? TK_ERROR : TK_INT;
        }
    } else {
        c->kind = TK_ERROR;
    }
    c->p = p;
}

static bool tok_is(const struct crit *c, const char *word)
{
    return c->kind == TK_WORD && strlen(word) == c->toklen &&
           memcmp(c->tok, word, c->toklen) == 0;
}

static bool tok_is_ci(const struct crit *c, const char *word)
{
    return c->kind == TK_WORD && strlen(word) == c->toklen &&
           strncasecmp(c->tok, word, c->toklen) == 0;
}

static bool compare(long a, enum cmp_op op, long b)
{
    switch (op) {
    case CMP_EQ: return a == b;
    case CMP_NE: return a != b;
    case CMP_LT: return a < b;
    case CMP_LE: return a <= b;
    case CMP_GT: return a > b;
    case CMP_GE: return a >= b;
    }
    return false;
}

/* Is the word (len bytes) one of the space-separated items of list? */
static bool list_has(const char *list, const char *word, size_t len)
{
    const char *p = list ? list : "";

    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == len && n && memcmp(p, word, len) == 0)
            return true;
        p += n;
    }
    return false;
}

static size_t list_count(const char *list)
{
    const char *p = list ? list : "";
    size_t count = 0;

    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n)
            count++;
        p += n;
    }
    return count;
}

/* Reads "CMP INT" after a numeric field name. */
static bool crit_cmp_int(struct crit *c, enum cmp_op *op, long *num)
{
    crit_next(c);
    if (c->kind != TK_CMP) {
        crit_fail(c, "expected a comparison");
        return false;
    }
    *op = c->cmp;
    crit_next(c);
    if (c->kind != TK_INT) {
        crit_fail(c, "expected a whole number");
        return false;
    }
    *num = c->num;
    crit_next(c);
    return true;
}

static bool crit_relation(struct crit *c)
{
    const struct eligibility_child *ch = c->child;
    enum cmp_op op;
    long num;

    if (c->kind != TK_WORD) {
        crit_fail(c, "expected a criterion");
        return false;
    }
    if (tok_is(c, "gender")) {
        crit_next(c);
        if (c->kind != TK_CMP || (c->cmp != CMP_EQ && c->cmp != CMP_NE)) {
            crit_fail(c, "expected = or != after gender");
            return false;
        }
        op = c->cmp;
        crit_next(c);
        const char *want;
        if (tok_is_ci(c, "m") || tok_is_ci(c, "male"))
            want = "m";
        else if (tok_is_ci(c, "f") || tok_is_ci(c, "female"))
            want = "f";
        else if (tok_is_ci(c, "o") || tok_is_ci(c, "other"))
            want = "o";
        else if (tok_is_ci(c, "na") || tok_is_ci(c, "n/a"))
            want = "na";
        else {
            crit_fail(c, "expected a gender");
            return false;
        }
        crit_next(c);
        bool same = ch->gender && strcmp(ch->gender, want) == 0;
        return op == CMP_EQ ? same : !same;
    }
    if (tok_is(c, "gestational_age_in_weeks")) {
        crit_next(c);
        if (c->kind != TK_CMP) {
            crit_fail(c, "expected a comparison");
            return false;
        }
        op = c->cmp;
        crit_next(c);
        if (tok_is_ci(c, "na") || tok_is_ci(c, "n/a")) {
            crit_next(c);
            /* Upstream compares with None: = and != work, an ordering
             * raised there; here it is simply not met. */
            if (op == CMP_EQ)
                return ch->gestational_weeks == 0;
            if (op == CMP_NE)
                return ch->gestational_weeks != 0;
            return false;
        }
        if (c->kind != TK_INT) {
            crit_fail(c, "expected a number of weeks");
            return false;
        }
        num = c->num;
        crit_next(c);
        /* "... if gestational_age_in_weeks else False" upstream. */
        return ch->gestational_weeks != 0 && compare(ch->gestational_weeks, op, num);
    }
    if (tok_is(c, "age_in_days")) {
        if (!crit_cmp_int(c, &op, &num))
            return false;
        return compare(ch->age_days, op, num);
    }
    if (tok_is(c, "n_languages") || tok_is(c, "num_languages")) {
        if (!crit_cmp_int(c, &op, &num))
            return false;
        return compare((long)list_count(ch->languages), op, num);
    }
    if (tok_is(c, "AND") || tok_is(c, "OR") || tok_is(c, "NOT")) {
        crit_fail(c, "unexpected operator");
        return false;
    }
    /* speaks_<code>, or a condition name.  Upstream accepts only the
     * names it knows; an unknown one here is simply not met. */
    bool met;
    if (c->toklen > 7 && memcmp(c->tok, "speaks_", 7) == 0)
        met = list_has(ch->languages, c->tok + 7, c->toklen - 7);
    else
        met = list_has(ch->conditions, c->tok, c->toklen);
    crit_next(c);
    return met;
}

static bool crit_expr(struct crit *c);

static bool crit_factor(struct crit *c)
{
    bool v;

    if (++c->depth > CRIT_MAX_DEPTH) {
        crit_fail(c, "expression nested too deeply");
        return false;
    }
    if (tok_is(c, "NOT")) {
        crit_next(c);
        v = !crit_factor(c);
    } else if (c->kind == TK_LPAREN) {
        crit_next(c);
        v = crit_expr(c);
        if (c->kind != TK_RPAREN)
            crit_fail(c, "expected )");
        else
            crit_next(c);
    } else {
        v = crit_relation(c);
    }
    c->depth--;
    return v;
}

/* Every operand is evaluated (no short circuit) so a syntax error anywhere
 * is found whatever the values. */
static bool crit_term(struct crit *c)
{
    bool v = crit_factor(c);

    while (!c->failed && tok_is(c, "AND")) {
        crit_next(c);
        bool w = crit_factor(c);
        v = v && w;
    }
    return v;
}

static bool crit_expr(struct crit *c)
{
    bool v = crit_term(c);

    while (!c->failed && tok_is(c, "OR")) {
        crit_next(c);
        bool w = crit_term(c);
        v = v || w;
    }
    return v;
}

int eligibility_criteria(const char *expr, const struct eligibility_child *child,
                         bool *result, char *err, size_t errlen)
{
    struct crit c = { .p = expr ? expr : "", .child = child, .err = err,
                      .errlen = errlen };

    if (err && errlen)
        err[0] = '\0';
    crit_next(&c);
    if (c.kind == TK_END) {
        *result = true;
        return 0;
    }
    bool v = crit_expr(&c);
    if (!c.failed && c.kind != TK_END)
        crit_fail(&c, "unexpected text");
    if (c.failed)
        return -1;
    *result = v;
    return 0;
}

/* ---- hashed child id ------------------------------------------------------ */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)tolower((unsigned char)ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* The 16 bytes of a hyphenated uuid string. */
static int uuid_bytes(const char *s, unsigned char out[16])
{
    int n = 0;

    if (!s || strlen(s) != 36)
        return -1;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -1;
            continue;
        }
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[n++] = (unsigned char)(hi << 4 | lo);
        i++;
    }
    return n == 16 ? 0 : -1;
}

int eligibility_hash_child_id(const char *child_uuid, const char *study_uuid,
                              const char *salt_uuid, int digits, char *out,
                              size_t outlen)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char a[16], b[16], s[16], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (digits < 1 || digits > ELIGIBILITY_HASH_MAX || outlen < (size_t)digits + 1 ||
        uuid_bytes(child_uuid, a) < 0 || uuid_bytes(study_uuid, b) < 0 ||
        uuid_bytes(salt_uuid, s) < 0)
        return -1;
    for (int i = 0; i < 16; i++)
        a[i] ^= b[i] ^ s[i];
    if (!EVP_Digest(a, sizeof a, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return -1;
    /* RFC 4648 base32, only as far as the digits wanted (52 characters
     * cover the 256 bits; padding never falls inside them). */
    for (int i = 0; i < digits; i++) {
        int bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)md[byte] << 8 | (byte + 1 < 32 ? md[byte + 1] : 0);
        char ch = alphabet[(v >> (11 - shift)) & 31];
        /* 1->a and 0->b cannot occur in base32; I and O can. */
        out[i] = ch == 'I' ? 'c' : ch == 'O' ? 'd' : ch;
    }
    out[digits] = '\0';
    return 0;
}
