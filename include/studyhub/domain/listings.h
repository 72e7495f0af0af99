/* listings: the families' study lists by age group and by lab (issue 18,
 * point 4).  Anyone may read them, signed in or not; they show only what
 * the discovery list shows (active, public studies), a page at a time.
 *
 *   GET /api/v1/age-groups/                    the five groups and bounds
 *   GET /api/v1/age-groups/{group}/studies/    active public studies whose
 *                                              age range meets the group's
 *   GET /api/v1/lab-pages/{slug}/              an approved lab's public face
 *   GET /api/v1/lab-pages/{slug}/studies/      its active public studies
 *   GET /ages/{group}/, /labs/{slug}/          the pages (a readable 404
 *                                              page for an unknown one)
 *
 * The groups and their bounds are upstream's (lookit-api accounts/forms.py
 * StudyListSearchForm.Children, accounts/queries.py
 * age_range_eligibility_for_study): a group is [lo, hi] years, and a study
 * is listed when its range [min, max] in days (years * 365 + months * 30 +
 * days) meets [lo * 365, hi * 365]. */
#ifndef STUDYHUB_DOMAIN_LISTINGS_H
#define STUDYHUB_DOMAIN_LISTINGS_H

struct router;

struct listings_age_group {
    const char *slug;      /* URL name: "babies" */
    const char *label;     /* for people: "Babies (under 1)" */
    int lo_years;          /* upstream's bounds, in years */
    int hi_years;
};

/* The groups, youngest first; *n gets their number. */
const struct listings_age_group *listings_age_groups(int *n);
/* The group named slug, or NULL (NULL slug too). */
const struct listings_age_group *listings_age_group(const char *slug);
/* Whether a study of [min_days, max_days] is listed in group g. */
int listings_study_in_group(const struct listings_age_group *g, long min_days,
                            long max_days);

/* 0, or -1 when the router refused a route. */
int listings_routes(struct router *r);

#endif
