/* fields: a family's writes checked against a field table and turned into
 * SQL parameters (see fields.h).  Everything is checked here, before the
 * database sees it, so that bad input is a 400 naming the field and never
 * a failed statement. */
#include "studyhub/domain/fields.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fields_today(char out[11])
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

bool fields_date_ok(const char *s)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, m, d;

    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return false;
    y = atoi(s);
    m = atoi(s + 5);
    d = atoi(s + 8);
    if (y < 1900 || y > 2999 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

static bool in_choices(const char *const *choices, const char *s)
{
    for (; choices && *choices; choices++)
        if (strcmp(*choices, s) == 0)
            return true;
    return false;
}

/* A string with no NUL inside (jansson allows \u0000; PostgreSQL text
 * does not). */
static const char *plain_string(json_t *v)
{
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

/* "a  b c" -> "a b c"; NULL on a bad code or too many.  Owned. */
static char *words_normalize(const char *s, long max_words)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    long words = 0;

    if (!out)
        return NULL;
    for (const char *p = s; *p;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (!len)
            break;
        if (len > 32 || ++words > max_words)
            goto bad;
        for (size_t i = 0; i < len; i++)
            if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != '-')
                goto bad;
        if (o != out)
            *o++ = ' ';
        memcpy(o, p, len);
        o += len;
        p += len;
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* A PostgreSQL array literal of strings that need no quoting (dates and
 * choices are plain), or NULL with why set. */
static char *array_literal(json_t *v, const struct field *f, const char *today,
                           const char **why)
{
    size_t i, n = json_array_size(v);
    json_t *el;
    char *out, *o;

    if (!json_is_array(v)) {
        *why = "Expected a list of items but got a different type.";
        return NULL;
    }
    if ((long)n > f->max) {
        *why = "Too many items in this list.";
        return NULL;
    }
    out = malloc(n * 12 + 3);
    if (!out) {
        *why = "Out of memory.";
        return NULL;
    }
    o = out;
    *o++ = '{';
    json_array_foreach(v, i, el) {
        const char *s = plain_string(el);
        bool ok = s && (f->kind == F_DATE_LIST
                            ? fields_date_ok(s) && (!(f->flags & FIELD_PAST) || strcmp(s, today) <= 0)
                            : in_choices(f->choices, s) && strlen(s) <= 10);
        for (size_t k = 0; ok && k < i; k++)
            ok = strcmp(json_string_value(json_array_get(v, k)), s) != 0;
        if (!ok) {
            *why = f->kind == F_DATE_LIST ? "Each date must be a real day, YYYY-MM-DD, not in the future."
                                          : "Each item must be one of the choices, given once.";
            free(out);
            return NULL;
        }
        o += sprintf(o, "%s%s", i ? "," : "", s);
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

/* One value into its parameter text (owned, or NULL for null); NULL with
 * why set when it is not acceptable. */
static char *field_value(const struct field *f, json_t *v, const char *today, const char **why,
                         bool *is_null)
{
    const char *s;
    char buf[32];

    *is_null = false;
    if (json_is_null(v)) {
        if (f->flags & FIELD_NULLABLE) {
            *is_null = true;
            return NULL;
        }
        *why = "This field may not be null.";
        return NULL;
    }
    switch (f->kind) {
    case F_TEXT:
        if (!(s = plain_string(v))) {
            *why = "Not a valid string.";
            return NULL;
        }
        if ((long)strlen(s) > f->max) {
            *why = "This text is too long.";
            return NULL;
        }
        if (f->flags & FIELD_NONEMPTY) {
            const char *p = s;
            while (isspace((unsigned char)*p))
                p++;
            if (!*p) {
                *why = "This field may not be blank.";
                return NULL;
            }
        }
        return strdup(s);
    case F_CHOICE:
        if (!(s = plain_string(v)) || !in_choices(f->choices, s)) {
            *why = "Not one of the choices.";
            return NULL;
        }
        return strdup(s);
    case F_DATE:
        if (!(s = plain_string(v)) || !fields_date_ok(s)) {
            *why = "Date has wrong format. Use YYYY-MM-DD.";
            return NULL;
        }
        if ((f->flags & FIELD_PAST) && strcmp(s, today) > 0) {
            *why = "The date cannot be in the future.";
            return NULL;
        }
        return strdup(s);
    case F_INT:
        if (!json_is_integer(v) || json_integer_value(v) < f->min ||
            json_integer_value(v) > f->max) {
            *why = "Not a whole number in the allowed range.";
            return NULL;
        }
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return strdup(buf);
    case F_BOOL:
        if (!json_is_boolean(v)) {
            *why = "Must be a valid boolean.";
            return NULL;
        }
        return strdup(json_is_true(v) ? "t" : "f");
    case F_WORDS: {
        char *w;
        if (!(s = plain_string(v)) || (long)strlen(s) > f->max * 33 ||
            !(w = words_normalize(s, f->max))) {
            *why = "Give codes separated by spaces (letters, digits, - and _).";
            return NULL;
        }
        return w;
    }
    case F_DATE_LIST:
    case F_CHOICE_LIST:
        return array_literal(v, f, today, why);
    case F_OBJECT: {
        char *text;
        if (!json_is_object(v)) {
            *why = "Expected an object.";
            return NULL;
        }
        text = json_dumps(v, JSON_COMPACT);
        if (text && (long)strlen(text) > f->max) {
            free(text);
            *why = "This object is too large.";
            return NULL;
        }
        return text;
    }
    case F_READONLY:
        break;
    }
    *why = "Not a valid value.";
    return NULL;
}

static int add_error(struct jsonapi_error *errs, int nerr, const char *name, const char *detail)
{
    if (nerr >= FIELDS_MAX_ERRORS)
        return nerr;
    jsonapi_error_set(&errs[nerr], 400, "invalid", NULL, "%s", detail);
    snprintf(errs[nerr].pointer, sizeof errs[nerr].pointer, "/data/attributes/%s", name);
    return nerr + 1;
}

int fields_parse(json_t *attrs, const struct field *f, size_t n, bool create,
                 const char *today, struct field_values *vals,
                 struct jsonapi_error *errs)
{
    const char *key;
    json_t *v;
    int nerr = 0;
    unsigned long seen = 0;     /* given, valid or not */

    memset(vals, 0, sizeof *vals);
    if (n > FIELDS_MAX)
        return add_error(errs, 0, "", "Too many fields.");
    json_object_foreach(attrs, key, v) {
        size_t i;
        for (i = 0; i < n && strcmp(f[i].name, key) != 0; i++)
            ;
        if (i == n) {
            nerr = add_error(errs, nerr, key, "Unknown attribute.");
            continue;
        }
        seen |= 1ul << i;
        if (f[i].kind == F_READONLY)
            continue;
        const char *why = NULL;
        bool is_null;
        char *p = field_value(&f[i], v, today, &why, &is_null);
        if (!p && !is_null) {
            nerr = add_error(errs, nerr, key, why ? why : "Not a valid value.");
            continue;
        }
        vals->param[i] = p;
        vals->mask |= 1ul << i;
    }
    for (size_t i = 0; create && i < n; i++)
        if ((f[i].flags & FIELD_REQUIRED) && !(seen & (1ul << i)))
            nerr = add_error(errs, nerr, f[i].name, "This field is required.");
    snprintf(vals->mask_text, sizeof vals->mask_text, "%lu", vals->mask);
    return nerr;
}

void fields_cleanup(struct field_values *vals)
{
    for (size_t i = 0; i < FIELDS_MAX; i++) {
        free(vals->param[i]);
        vals->param[i] = NULL;
    }
}
