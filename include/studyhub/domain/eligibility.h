/* eligibility: pure functions about a child and a study: whether the child
 * may take part (age range, criteria expression, earlier participation, as
 * upstream computes them when a response is created) and the hashed child
 * id that the exit URL and exports carry (runner-api.md section 4).  No
 * I/O: the callers look the facts up in SQL and hand them in. */
#ifndef STUDYHUB_DOMAIN_ELIGIBILITY_H
#define STUDYHUB_DOMAIN_ELIGIBILITY_H

#include <stdbool.h>
#include <stddef.h>

/* A study's age limits as stored (studies.min_age_* / max_age_*). */
struct eligibility_ages {
    int min_years, min_months, min_days;
    int max_years, max_months, max_days;
};

/* Upstream's convention (studies/queries.py study_age_range): a year is
 * 365 days and a month 30, so a limit is years*365 + months*30 + days. */
long eligibility_limit_days(int years, int months, int days);

/* The child's age (today - birthday, in days) against the study's range,
 * both ends inclusive as upstream: < 0 days too young, > 0 days too old,
 * 0 in range.  A study whose maximum is 0 days accepts only newborns, as
 * upstream does. */
long eligibility_age_difference(long age_days, const struct eligibility_ages *a);

/* What the criteria expression can ask about a child. */
struct eligibility_child {
    long age_days;           /* today - birthday */
    const char *gender;      /* "m", "f", "o" or "na" (borrowed) */
    int gestational_weeks;   /* 23..40; 0 when not known */
    const char *languages;   /* space-separated codes, e.g. "en fr" (borrowed) */
    const char *conditions;  /* space-separated condition names (borrowed) */
};

/* Evaluates upstream's criteria grammar (studies/queries.py):
 *   expr   := term ("OR" term)*      term := factor ("AND" factor)*
 *   factor := "NOT" factor | "(" expr ")" | relation
 *   relation := gender (=|!=) (m|f|o|na|male|female|other)
 *             | gestational_age_in_weeks CMP (INT | na | n/a)
 *             | age_in_days CMP INT | (n_languages|num_languages) CMP INT
 *             | speaks_<code> | <condition name>
 * with CMP one of = != < <= > >=.  An empty expression is true.  Returns
 * 0 and *result, or -1 with a message in err when it cannot be parsed
 * (upstream validates expressions when a study is saved; the caller
 * treats an unparsable one as met, see responses.c). */
int eligibility_criteria(const char *expr, const struct eligibility_child *child,
                         bool *result, char *err, size_t errlen);

/* Ineligibility reasons; 0 means eligible. */
enum {
    ELIGIBILITY_TOO_YOUNG = 1 << 0,
    ELIGIBILITY_TOO_OLD = 1 << 1,
    ELIGIBILITY_CRITERIA = 1 << 2,
    ELIGIBILITY_PARTICIPATION = 1 << 3,
};

/* The flags of upstream's get_eligibility_for_response, from the child's
 * age in days (children.birthday is NOT NULL, so it is always known),
 * criteria_met and participation_ok (computed in SQL by the caller). */
unsigned eligibility_flags(long age_days, const struct eligibility_ages *a,
                           bool criteria_met, bool participation_ok);

/* The response's eligibility as a PostgreSQL text[] literal, its names
 * sorted as upstream sorts them: "{Eligible}" or e.g.
 * "{Ineligible_Participation,Ineligible_TooOld}".  buf needs 128 bytes. */
const char *eligibility_pg_array(unsigned flags, char *buf, size_t len);

/* The hashed child id: base32(sha256(child xor study xor salt)), with
 * 1->a 0->b I->c O->d, cut to digits characters (1..52).  Ids are uuid
 * strings (any case, hyphenated).  out needs digits + 1 bytes (53 is
 * always enough).  Returns 0, or -1 on a malformed uuid or digits. */
#define ELIGIBILITY_HASH_MAX 52
int eligibility_hash_child_id(const char *child_uuid, const char *study_uuid,
                              const char *salt_uuid, int digits, char *out,
                              size_t outlen);

#endif
