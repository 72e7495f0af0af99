/* s3xml: S3's XML replies parsed with expat (see the header). */
#include "config.h"

#include "studyhub/io/s3xml.h"

#include <errno.h>
#include <expat.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Root (1), its children (2), an item's fields (3); deeper is skipped but
 * bounded, so a hostile reply cannot grow the stack of states. */
#define S3XML_MAX_DEPTH 16

struct parse {
    XML_Parser xp;
    const char *item_name;
    struct s3xml_doc *doc;
    int depth;
    struct s3xml_record *target;  /* record the open field goes to */
    char *name;                   /* owned: the open field's name */
    char *text;                   /* owned: its text so far */
    size_t text_len;
    bool in_field;
    int err;                      /* first failure */
    const char *why;
};

static void stop(struct parse *p, int err, const char *why)
{
    if (!p->err) {
        p->err = err;
        p->why = why;
    }
    XML_StopParser(p->xp, XML_FALSE);
}

static void record_free(struct s3xml_record *r)
{
    for (size_t i = 0; i < r->nfields; i++) {
        free(r->fields[i].name);
        free(r->fields[i].text);
    }
    free(r->fields);
    r->fields = NULL;
    r->nfields = 0;
}

static void on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    struct parse *p = arg;
    struct s3xml_doc *d = p->doc;

    (void)attrs;
    if (++p->depth > S3XML_MAX_DEPTH) {
        stop(p, -EIO, "XML nested too deeply");
        return;
    }
    p->in_field = false;  /* an element inside a field: it was not one */
    if (p->depth == 1) {
        if (!(d->root = strdup(name)))
            stop(p, -ENOMEM, "out of memory");
        return;
    }
    if (p->depth == 2 && p->item_name && strcmp(name, p->item_name) == 0) {
        struct s3xml_record *items = realloc(d->items, (d->nitems + 1) * sizeof *items);
        if (!items) {
            stop(p, -ENOMEM, "out of memory");
            return;
        }
        d->items = items;
        memset(&items[d->nitems], 0, sizeof *items);
        p->target = &items[d->nitems++];
        return;
    }
    if (p->depth == 2)
        p->target = &d->top;
    else if (p->depth != 3 || p->target == &d->top || !p->target)
        return;  /* below a field, or a field of a field: not ours */
    free(p->name);
    free(p->text);
    p->name = strdup(name);
    p->text = NULL;
    p->text_len = 0;
    p->in_field = p->name != NULL;
    if (!p->name)
        stop(p, -ENOMEM, "out of memory");
}

static void on_text(void *arg, const XML_Char *s, int len)
{
    struct parse *p = arg;

    if (!p->in_field || len <= 0)
        return;
    char *t = realloc(p->text, p->text_len + (size_t)len + 1);
    if (!t) {
        stop(p, -ENOMEM, "out of memory");
        return;
    }
    memcpy(t + p->text_len, s, (size_t)len);
    p->text_len += (size_t)len;
    t[p->text_len] = '\0';
    p->text = t;
}

static void on_end(void *arg, const XML_Char *name)
{
    struct parse *p = arg;
    struct s3xml_record *r = p->target;

    (void)name;
    if (p->in_field && r) {
        struct s3xml_field *f = realloc(r->fields, (r->nfields + 1) * sizeof *f);
        char *text = p->text ? p->text : strdup("");
        if (!f || !text) {
            if (f)
                r->fields = f;
            stop(p, -ENOMEM, "out of memory");
        } else {
            r->fields = f;
            f[r->nfields++] = (struct s3xml_field){ p->name, text };
            p->name = NULL;
            p->text = NULL;
        }
        p->in_field = false;
    }
    if (p->depth == 2)
        p->target = NULL;
    p->depth--;
}

static void on_doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
                       const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    stop(arg, -EIO, "XML with a DOCTYPE");
}

int s3xml_parse(const char *xml, size_t len, const char *item_name,
                struct s3xml_doc *out, const char **err)
{
    const char *dummy;
    struct parse p = { .item_name = item_name, .doc = out };

    if (!err)
        err = &dummy;
    *err = NULL;
    memset(out, 0, sizeof *out);
    if (len > (size_t)INT32_MAX) {
        *err = "XML too large";
        return -EIO;
    }
    p.xp = XML_ParserCreate("UTF-8");
    if (!p.xp) {
        *err = "out of memory";
        return -ENOMEM;
    }
    XML_SetUserData(p.xp, &p);
    XML_SetElementHandler(p.xp, on_start, on_end);
    XML_SetCharacterDataHandler(p.xp, on_text);
    XML_SetStartDoctypeDeclHandler(p.xp, on_doctype);
    if (XML_Parse(p.xp, xml ? xml : "", (int)len, XML_TRUE) != XML_STATUS_OK && !p.err) {
        p.err = -EIO;
        p.why = "malformed XML";
    }
    if (!p.err && !out->root) {
        p.err = -EIO;
        p.why = "empty XML";
    }
    XML_ParserFree(p.xp);
    free(p.name);
    free(p.text);
    if (p.err) {
        s3xml_doc_free(out);
        *err = p.why;
    }
    return p.err;
}

const char *s3xml_get(const struct s3xml_record *r, const char *name)
{
    for (size_t i = 0; r && i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            return r->fields[i].text;
    return NULL;
}

char *s3xml_dup(const struct s3xml_record *r, const char *name)
{
    const char *t = s3xml_get(r, name);
    return t ? strdup(t) : NULL;
}

void s3xml_doc_free(struct s3xml_doc *d)
{
    if (!d)
        return;
    free(d->root);
    record_free(&d->top);
    for (size_t i = 0; i < d->nitems; i++)
        record_free(&d->items[i]);
    free(d->items);
    memset(d, 0, sizeof *d);
}
