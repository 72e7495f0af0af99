/* s3xml: S3's XML replies (list, multipart uploads, errors, copy and
 * upload results), parsed with expat into flat records.
 *
 * S3 replies are one root element whose children are either text fields
 * (<IsTruncated>, <Code>) or repeated items (<Contents>, <Upload>) whose own
 * children are text fields.  Deeper elements (an Upload's <Initiator>) are
 * skipped.  A DOCTYPE is refused: S3 never sends one, and it is the door to
 * entity expansion. */
#ifndef STUDYHUB_IO_S3XML_H
#define STUDYHUB_IO_S3XML_H

#include <stdbool.h>
#include <stddef.h>

struct s3xml_field {
    char *name;   /* owned */
    char *text;   /* owned; entities decoded, "" for an empty element */
};

struct s3xml_record {
    struct s3xml_field *fields;  /* owned */
    size_t nfields;
};

struct s3xml_doc {
    char *root;                  /* owned: the root element's name */
    struct s3xml_record top;     /* the root's text children */
    struct s3xml_record *items;  /* owned: each child named item_name */
    size_t nitems;
};

/* Parses len bytes.  item_name (may be NULL) names the repeated children
 * to collect as items.  0, or -EIO with *err set (malformed, a DOCTYPE,
 * or nesting deeper than S3 uses) or -ENOMEM; out is empty on failure. */
int s3xml_parse(const char *xml, size_t len, const char *item_name,
                struct s3xml_doc *out, const char **err);
/* The text of the first field named name, or NULL. */
const char *s3xml_get(const struct s3xml_record *r, const char *name);
/* A copy of it (caller frees), or NULL when absent or out of memory. */
char *s3xml_dup(const struct s3xml_record *r, const char *name);
void s3xml_doc_free(struct s3xml_doc *d);

#endif
