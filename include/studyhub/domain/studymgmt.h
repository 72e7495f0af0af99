/* studymgmt: the researcher's side of studies (reference sections 1, 3,
 * 7).  The runner's GET /api/v1/studies/ stays as upstream has it
 * (studies.c, read-only); researchers manage studies here:
 *
 *   GET    /api/v1/researcher/studies/            ?state= &lab=  studies they can read
 *   POST   /api/v1/researcher/studies/            create (associate_lab__study on
 *                                                 relationships.lab); creator = admin
 *   GET    /api/v1/researcher/studies/{id}/       every field but the salt
 *   PATCH  /api/v1/researcher/studies/{id}/       edit (edit_study__details; moving
 *                                                 labs: edit_study__lab); monitored
 *                                                 fields of a reviewed study send it
 *                                                 back to rejected (study_review_fields)
 *   POST   /api/v1/researcher/studies/{id}/clone/ new uuid and salt, state created,
 *                                                 the caller its creator and admin
 *   GET    /api/v1/researcher/studies/{id}/logs/  ?action=  newest first
 *   GET    /api/v1/researcher/studies/{id}/groups/
 *   POST   /api/v1/researcher/studies/{id}/groups/{group}/members/   {"data":{"type":"users","id":..}}
 *   DELETE /api/v1/researcher/studies/{id}/groups/{group}/members/{user}/
 *
 * Every route is one statement; the permission checks, the change, its
 * study log and its emails are that statement (sql/030_workflow.sql). */
#ifndef STUDYHUB_DOMAIN_STUDYMGMT_H
#define STUDYHUB_DOMAIN_STUDYMGMT_H

#include <jansson.h>
#include <stddef.h>

#include "studyhub/http/jsonapi.h"

struct router;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int studymgmt_routes(struct router *r);

/* ---- checking the attributes of a management request (labs use it too) */

enum studymgmt_kind {
    SM_TEXT,        /* a string of at most max bytes */
    SM_NAME,        /* a non-empty string of at most max bytes */
    SM_TEXT_NULL,   /* a string or null */
    SM_URL,         /* "" or an absolute http(s) URL */
    SM_SLUG,        /* "" or [a-z0-9-] */
    SM_INT,         /* an integer in [min, max] */
    SM_BOOL,
    SM_OBJECT,      /* a JSON object */
    SM_READONLY,    /* rendered by the server: accepted and ignored */
};

struct studymgmt_field {
    const char *name;          /* attribute name (= column) */
    enum studymgmt_kind kind;
    long min, max;             /* SM_INT: bounds; strings: max is the byte limit */
};

/* Checks attrs (may be NULL: no attributes) against the fields: an
 * unknown attribute or a wrong value is a 400 with its pointer in e.  On
 * success *clean is a new object of the writable attributes given. */
int studymgmt_attrs_check(const json_t *attrs, const struct studymgmt_field *fields,
                          size_t nfields, json_t **clean, struct jsonapi_error *e);

#endif
