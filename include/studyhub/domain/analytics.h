/* analytics: what a lab's researchers see of its participants as a whole
 * (issue 18 points 1 and 2): the participant browser and the charts.
 * Each route is one statement of sql/functions/analytics.sql, which
 * checks the permissions and computes in SQL; nothing here counts rows.
 *
 *   GET /api/v1/researcher/labs/{id}/participants/   ?study=<uuid>
 *       the families with a consented, non-preview response in a study of
 *       the lab the caller may read (read_study__responses), newest
 *       session first, each with its children and those responses.
 *       De-identified: a lab-wide hashed id of the family and of each
 *       child, the study's hashed child id and the age in days of each
 *       response; names and birthdays only where the caller holds
 *       read_study__responses__identifiable for a study shown.  Each page
 *       writes an access-log entry (participant_list) for every study of
 *       the scope.
 *   GET /api/v1/researcher/studies/{id}/analytics/{chart}
 *   GET /api/v1/researcher/labs/{id}/analytics/{chart}
 *       ?field=<demographic question> (demographics only)
 *       ?format=csv   the chart's numbers as a CSV file
 *       one chart of the study (or of every study of the lab the caller
 *       may read): over-time, ages, genders, demographics, rates.
 *       Counted: non-preview responses whose consent is accepted only,
 *       except the consent rates, which count the states of every
 *       non-preview response (a state, not the child's data).  In the
 *       breakdowns by child or family (ages, genders, demographics) a
 *       count under ANALYTICS_MIN_CELL is left out (null; "<5" in CSV).
 *       Aggregates are not written to the access log: they show no row.
 */
#ifndef STUDYHUB_DOMAIN_ANALYTICS_H
#define STUDYHUB_DOMAIN_ANALYTICS_H

#include <jansson.h>
#include <stddef.h>

#include "studyhub/http/jsonapi.h"

struct evbuffer;
struct router;

/* Counts under this in a breakdown by child or family are suppressed: 1
 * to 4 children of one age or answer in a small study could be told
 * apart by someone who knows the families. */
#define ANALYTICS_MIN_CELL 5

/* Checks a chart request: chart one of the five names; field given (one
 * of ANALYTICS_FIELDS) for demographics and only there; format absent,
 * "json" or "csv".  0, or -1 with e (400, or 404 for an unknown chart).
 * Pure: unit-tested. */
int analytics_check(const char *chart, const char *field, const char *format,
                    struct jsonapi_error *e);

/* The demographic questions a demographics chart may count by, NULL
 * terminated. */
extern const char *const analytics_fields[];

/* The CSV of a chart's attributes (columns, rows, chart, min_cell):
 * a header line, then a line per row, CRLF-ended, fields as the exports
 * write them; a suppressed count (null in the last column of ages,
 * genders, demographics) as "<min_cell".  0, or -1 when attributes has
 * no columns or rows.  Pure: unit-tested. */
int analytics_csv(struct evbuffer *out, const json_t *attributes);

/* Adds the module's routes; 0, or -1 when the router refused one. */
int analytics_routes(struct router *r);

#endif
