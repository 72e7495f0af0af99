/* fields: the attributes a family may write (children, demographics, their
 * own profile), checked against a table of fields and turned into the text
 * parameters of one SQL statement.
 *
 * Every problem is reported at once, each with its source pointer
 * (/data/attributes/<name>), so a form can show them all beside their
 * fields.  A name the resource does not have is an error; a read-only
 * attribute (one the API renders, e.g. pk) is ignored, so a client may
 * send back what it read. */
#ifndef STUDYHUB_DOMAIN_FIELDS_H
#define STUDYHUB_DOMAIN_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "studyhub/http/jsonapi.h"

#define FIELDS_MAX 24          /* fields of one table (bits of the mask) */
#define FIELDS_MAX_ERRORS 16   /* errors reported at once */

enum field_kind {
    F_TEXT,        /* string of at most max bytes */
    F_CHOICE,      /* string, one of choices ("" only if listed) */
    F_DATE,        /* "YYYY-MM-DD", a real day; FIELD_PAST: not after today */
    F_INT,         /* integer in [min, max] */
    F_BOOL,        /* true or false: "t" or "f" */
    F_WORDS,       /* string of space-separated codes ([A-Za-z0-9_-], each at
                    * most 32), at most max of them: normalized to single spaces */
    F_DATE_LIST,   /* array of at most max dates (FIELD_PAST each): "{d,d}" */
    F_CHOICE_LIST, /* array of distinct choices: "{a,b}" */
    F_OBJECT,      /* JSON object of at most max bytes, as compact JSON */
    F_READONLY,    /* rendered by the API: accepted and ignored */
};

#define FIELD_REQUIRED 1u   /* must be given when creating */
#define FIELD_NULLABLE 2u   /* null is a value (the parameter is NULL) */
#define FIELD_PAST 4u       /* dates: not in the future */
#define FIELD_NONEMPTY 8u   /* text: not blank */

struct field {
    const char *name;               /* attribute name (static) */
    enum field_kind kind;
    unsigned flags;                 /* FIELD_* */
    long min, max;                  /* see the kinds */
    const char *const *choices;     /* NULL-terminated (static) */
};

/* The parsed values, in the order of the table. */
struct field_values {
    char *param[FIELDS_MAX];        /* SQL parameter text (owned); NULL when
                                     * absent or null */
    unsigned long mask;             /* bit i: field i was given */
    char mask_text[24];             /* mask as decimal text, for $n::bigint */
};

/* Checks attrs (an object, or NULL for none) against the n fields.  With
 * create, FIELD_REQUIRED fields must be present.  Returns the number of
 * errors written to errs (at most FIELDS_MAX_ERRORS; 0: all good, and vals
 * holds the parameters).  today is "YYYY-MM-DD" (FIELD_PAST).  vals must be
 * released with fields_cleanup either way. */
int fields_parse(json_t *attrs, const struct field *f, size_t n, bool create,
                 const char *today, struct field_values *vals,
                 struct jsonapi_error *errs);
void fields_cleanup(struct field_values *vals);

/* Today's date in UTC as "YYYY-MM-DD". */
void fields_today(char out[11]);

/* Is s a real calendar day written "YYYY-MM-DD" (years 1900 to 2999)? */
bool fields_date_ok(const char *s);

#endif
