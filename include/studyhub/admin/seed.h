/* seed: the `seed-demo` admin command, which idempotently creates the demo
 * data set (a lab, a researcher, a site admin, a participant with
 * demographics and a child, and an active study with a frame-player
 * protocol) and prints its logins and ids. */
#ifndef STUDYHUB_ADMIN_SEED_H
#define STUDYHUB_ADMIN_SEED_H

struct admin_server;

/* Fixed demo logins (README lists them).  Only accounts seed-demo makes
 * get these passwords: it never changes an existing one. */
#define SEED_RESEARCHER_EMAIL "researcher@demo.studyhub.test"
#define SEED_RESEARCHER_PASSWORD "studyhub-researcher"
#define SEED_ADMIN_EMAIL "admin@demo.studyhub.test"
#define SEED_ADMIN_PASSWORD "studyhub-admin"
#define SEED_PARTICIPANT_EMAIL "participant@demo.studyhub.test"
#define SEED_PARTICIPANT_PASSWORD "studyhub-participant"
/* Fixed ids, so the participant URL is the same on every machine. */
#define SEED_STUDY_UUID "d3b5c0de-5eed-4a11-9e10-5757d1e5ba5e"
#define SEED_CHILD_UUID "c41d0000-5eed-4a11-9e10-5757d1e5ba5e"

void seed_register(struct admin_server *srv);

#endif
