/* export: a study's data as files, streamed row by row (issue 15 point 3,
 * reference/lookit.md section 9).
 *
 *   GET /api/v1/researcher/studies/{id}/exports/{file}
 *       ?identifiable=true   add the identifiable columns (names, exact
 *                            birthdays, conditions, free text): needs
 *                            read_study__responses__identifiable; the file
 *                            name then ends in -identifiable
 *       ?preview=true        add preview responses: needs
 *                            read_study__responses(is_preview=True)
 *
 * Files (EXPORT_FORMATS below): responses.json, summary.csv,
 * summary-dictionary.csv, children.csv, children-dictionary.csv,
 * frames.csv, frames-dictionary.csv, demographics.json,
 * demographics.csv, demographics-dictionary.csv.
 *
 * Rows: consented responses only (the newest ruling is "accepted", read
 * per batch, so a ruling changed during a download applies from the next
 * batch), and preview responses only when asked for and allowed.
 * Non-preview rows need read_study__responses.  De-identified by
 * default: the child and the parent appear as hashed ids (per study, as
 * the runner computes them), ages in days; exp_data loses the exit
 * survey's birthDate and free-text keys (EXPORT_FREE_TEXT_KEYS).
 *
 * Streaming: keyset batches through the ordinary pool (a statement per
 * EXPORT_BATCH responses, "id > the last one"), each written as it comes;
 * the next batch is asked for when one arrives (so PostgreSQL reads it
 * while this one is written), but only while the client has taken all
 * but EXPORT_PENDING_MAX bytes.  Memory is two batches plus that,
 * whatever the study's size; nothing holds a connection or a transaction
 * while the client reads.  Every export writes an access-log entry when
 * it starts. */
#ifndef STUDYHUB_DOMAIN_EXPORT_H
#define STUDYHUB_DOMAIN_EXPORT_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct pg_stmt;
struct router;

/* Responses (or children) per batch statement.  20 KB of exp_data each:
 * about 2 MB of result per batch. */
#define EXPORT_BATCH 100
/* frames.csv's: its batch of 100 came to 3 MB of rows formatted in one
 * go, out of the caches and while nothing was sent; 25 (under 1 MB)
 * took less than half the CPU per response in tools/bench. */
#define EXPORT_FRAMES_BATCH 25
/* Unsent bytes above which the stream waits for the client.  Large
 * enough that the next batch's query runs while the socket drains the
 * last one (a batch is about 2-3 MB), small enough that a download's
 * memory stays a few MB. */
#define EXPORT_PENDING_MAX (4 * 1024 * 1024)
/* How often a waiting stream looks again (ms). */
#define EXPORT_WAIT_MS 5

/* exp_data keys dropped from de-identified exports (the exit survey's
 * birth date and the family's free text). */
#define EXPORT_FREE_TEXT_KEYS "'birthDate', 'feedback', 'childName'"

/* One column of a CSV file and its data dictionary entry. */
struct export_column {
    const char *name;
    const char *description;
    bool identifiable;         /* only with ?identifiable=true */
};

enum export_kind {
    EXPORT_CSV,          /* the columns, a header line and a row per result row */
    EXPORT_JSON,         /* a JSON array of the rows' one JSON text */
    EXPORT_DICTIONARY,   /* column,description,identifiable of another file */
    EXPORT_FRAMES,       /* CSV whose rows C unrolls from each response's exp_data */
};

struct export_format {
    const char *file;                      /* the URL's {file} */
    const char *base;                      /* the download's name, before the suffix */
    const char *ext;                       /* "csv", "json" */
    enum export_kind kind;
    const struct export_column *columns;   /* CSV and dictionary */
    size_t ncolumns;
    const struct pg_stmt *stmt;            /* batch statement; NULL for dictionaries */
};

/* The format named by file, or NULL. */
const struct export_format *export_format_find(const char *file);

/* The download's file name: <study uuid>-<base>[-identifiable].<ext>. */
void export_file_name(const struct export_format *f, const char *study_uuid,
                      bool identifiable, char *out, size_t outlen);

/* RFC 4180: a field is quoted when it holds a comma, quote, CR or LF, or
 * begins or ends with a space; quotes are doubled.  A field a spreadsheet
 * would run as a formula (first character = + - @ tab or CR, and not a
 * number) gets a leading apostrophe.  NULL is the empty field. */
void export_csv_field(struct evbuffer *out, const char *s, size_t len);
/* The header line of the columns shown (identifiable ones only when
 * identifiable), CRLF-terminated. */
void export_csv_header(struct evbuffer *out, const struct export_format *f, bool identifiable);
/* One line: field i of fields is column i; identifiable columns are
 * skipped unless identifiable.  lens[i] is ignored for NULL fields. */
void export_csv_row(struct evbuffer *out, const struct export_format *f, bool identifiable,
                    const char *const *fields, const size_t *lens);
/* The frame-data rows of one response (frames.csv's columns): each key
 * of each frame in the order written (eventTimings aside; without
 * identifiable, the EXPORT_FREE_TEXT_KEYS left out), then each key of
 * each eventTimings entry with its number from 1; a frame with no row
 * gets one with an empty key.  An array exp_data (jsPsych) numbers its
 * trials from 0.  Returns the rows written, or -1 (nothing written) when
 * exp_data is not JSON. */
long export_frame_rows(struct evbuffer *out, const char *response, const char *hash,
                       const char *exp_data, size_t len, bool identifiable);
/* exp_data as responses.json writes it: as stored, or (without
 * identifiable, when it holds one of the EXPORT_FREE_TEXT_KEYS) with
 * those keys dropped from every frame of an object exp_data and every
 * trial of an array one.  Returns 0, or -1 (nothing written) when it has
 * to be parsed and is not JSON. */
int export_exp_data(struct evbuffer *out, const char *exp_data, size_t len, bool identifiable);
/* The data dictionary of f's columns (all of them, marked). */
void export_dictionary(struct evbuffer *out, const struct export_format *f);

/* Adds the export route; 0, or -1 when the router refused it. */
int export_routes(struct router *r);

#endif
