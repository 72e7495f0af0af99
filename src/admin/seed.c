/* seed: `seed-demo` creates or refreshes the demo data set in one SQL
 * statement (so it is all-or-nothing and safe to run again) and prints the
 * demo logins, the study and child uuids and the participant URL.  It
 * never changes an existing account's password or roles, and it makes the
 * demo site admin only while the server listens on loopback (a demo
 * password on a reachable site admin would be an open door).
 * `seed-demo --if-empty` (tools/run) does nothing in a database that has
 * any user. */
#include "studyhub/admin/seed.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "studyhub/admin/admin.h"
#include "studyhub/core/app.h"
#include "studyhub/core/config.h"
#include "studyhub/http/auth.h"
#include "studyhub/http/auth_password.h"
#include "studyhub/core/log.h"
#include "studyhub/core/util.h"
#include "studyhub/http/server.h"
#include "studyhub/http/static.h"
#include "studyhub/io/pg.h"
#include "studyhub/io/storage.h"

/* The realistic protocol of runner-api.md section 6: video config,
 * video consent, a text frame and the exit survey. */
static const char seed_structure[] =
    "{\"frames\": {"
    "\"video-config\": {\"kind\": \"exp-video-config\", \"troubleshootingIntro\": \"\"},"
    "\"video-consent\": {\"kind\": \"exp-lookit-video-consent\","
    " \"template\": \"consent_005\", \"PIName\": \"Jane Smith\","
    " \"institution\": \"Science University\","
    " \"PIContact\": \"Jane Smith at 123 456 7890\","
    " \"purpose\": \"Why do babies love cats?\","
    " \"procedures\": \"Your child will be shown pictures of cats.\","
    " \"payment\": \"No payment.\","
    " \"datause\": \"We will measure looking time.\","
    " \"include_databrary\": true, \"gdpr\": false,"
    " \"research_rights_statement\": \"You are not waiving any legal claims.\"},"
    "\"study-intro\": {\"kind\": \"exp-lookit-text\", \"showPreviousButton\": false,"
    " \"blocks\": [{\"title\": \"About the study\","
    " \"text\": \"This is a test study.\", \"emph\": true}]},"
    "\"exit-survey\": {\"kind\": \"exp-lookit-exit-survey\","
    " \"debriefing\": {\"title\": \"Thank you!\", \"text\": \"You participated.\"}}"
    "},"
    "\"sequence\": [\"video-config\", \"video-consent\", \"study-intro\", \"exit-survey\"]}";

/* ($1, $2, $3) password hashes of researcher, admin, participant;
 * $4 structure; $5 exit_url; $6 make the site admin.  Upserts by natural
 * keys (lab name, email) or the fixed uuids, but an existing user is left
 * as it is (the no-op update is there for RETURNING), and so is a public
 * page's text a site admin has written (only empty ones get the starting
 * text); the child's birthday
 * is reset to 400 days ago on every run so it stays inside the study's 6
 * months - 3 years. */
static const struct pg_stmt seed_demo_stmt = {
    "seed_demo",
    "WITH lab AS ("
    "  INSERT INTO labs (name, slug, institution, principal_investigator_name,"
    "                    contact_email, lab_website, description,"
    "                    irb_contact_info, approved_to_test)"
    "  VALUES ('Demo Lab', 'demo-lab', 'Science University', 'Jane Smith',"
    "          'lab@demo.studyhub.test', 'https://demo.studyhub.test/lab/',"
    "          'A demonstration lab studying how babies learn.',"
    "          'Science University IRB, irb@demo.studyhub.test', true)"
    "  ON CONFLICT (name) DO UPDATE SET approved_to_test = true"
    "  RETURNING id, uuid),"
    " researcher AS ("
    "  INSERT INTO users (email, password_hash, given_name, family_name,"
    "                     nickname, is_researcher)"
    "  VALUES ('" SEED_RESEARCHER_EMAIL "', $1, 'Jane', 'Smith', 'Jane', true)"
    "  ON CONFLICT ((lower(email))) DO UPDATE SET email = users.email"
    "  RETURNING id, (xmax = 0) AS inserted),"
    " site_admin AS ("
    "  INSERT INTO users (email, password_hash, given_name, family_name,"
    "                     nickname, is_researcher, is_site_admin)"
    "  SELECT '" SEED_ADMIN_EMAIL "', $2, 'Ada', 'Admin', 'Ada', true, true"
    "   WHERE $6::boolean"
    "  ON CONFLICT ((lower(email))) DO UPDATE SET email = users.email"
    "  RETURNING id, (xmax = 0) AS inserted),"
    " participant AS ("
    "  INSERT INTO users (email, password_hash, given_name, family_name,"
    "                     nickname)"
    "  VALUES ('" SEED_PARTICIPANT_EMAIL "', $3, 'Pat', 'Parent', 'Pat')"
    "  ON CONFLICT ((lower(email))) DO UPDATE SET email = users.email"
    "  RETURNING id, (xmax = 0) AS inserted),"
    " membership AS ("
    "  INSERT INTO lab_members (lab_id, user_id, role)"
    "  SELECT lab.id, researcher.id, 'admin' FROM lab, researcher"
    "  ON CONFLICT (lab_id, user_id) DO UPDATE SET role = 'admin'"
    "  RETURNING 1),"
    " child AS ("
    "  INSERT INTO children (uuid, user_id, given_name, birthday, gender,"
    "                        gestational_age_at_birth, languages_spoken)"
    "  SELECT '" SEED_CHILD_UUID "'::uuid, participant.id, 'Sally',"
    "         current_date - 400, 'f', 40, '{en}'"
    "    FROM participant"
    "  ON CONFLICT (uuid) DO UPDATE SET user_id = EXCLUDED.user_id,"
    "    birthday = EXCLUDED.birthday, deleted = false"
    "  RETURNING id, uuid, birthday),"
    " demographics AS ("
    "  INSERT INTO demographic_data (user_id, number_of_children,"
    "      child_birthdays, number_of_guardians,"
    "      us_race_ethnicity_identification, age, gender, education_level,"
    "      annual_income, lookit_referrer, country, state, density)"
    "  SELECT participant.id, '1', ARRAY[child.birthday], '2', '{white}',"
    "         '30-34', 'f', 'grad', '100000', 'Demo seed', 'US', 'MA', 'urban'"
    "    FROM participant, child"
    "   WHERE NOT EXISTS (SELECT 1 FROM demographic_data d"
    "                      WHERE d.user_id = participant.id)"
    "  RETURNING 1),"
    " study AS ("
    "  INSERT INTO studies (uuid, name, preview_summary, short_description,"
    "      purpose, criteria, duration, contact_info, compensation_description,"
    "      min_age_months, max_age_years, exit_url, structure, state,"
    "      status_change_date, public, built, metadata, lab_id, creator_id,"
    "      study_type)"
    "  SELECT '" SEED_STUDY_UUID "'::uuid, 'Why do babies love cats?',"
    "         'Babies watch pictures of cats.',"
    "         'A short study of how long babies look at cats.',"
    "         'We want to learn what makes pictures interesting to babies.',"
    "         'Children between 6 months and 3 years old.', '10 minutes',"
    "         'Jane Smith (" SEED_RESEARCHER_EMAIL ")', 'No payment.',"
    "         6, 3, $5, $4::jsonb, 'active', now(), true, true,"
    "         '{\"player_repo_url\": \"https://github.com/lookit/ember-lookit-frameplayer\","
    "           \"last_known_player_sha\": \"9e8b47f6136e218f02b8d77bc6dbc8030e800880\"}',"
    "         lab.id, researcher.id, 1"
    "    FROM lab, researcher"
    "  ON CONFLICT (uuid) DO UPDATE SET state = 'active', public = true,"
    "    built = true, is_building = false, structure = EXCLUDED.structure,"
    "    exit_url = EXCLUDED.exit_url, lab_id = EXCLUDED.lab_id,"
    "    min_age_months = 6, max_age_years = 3"
    "  RETURNING id, uuid, (xmax = 0) AS inserted),"
    " study_admin AS ("
    "  INSERT INTO study_members (study_id, user_id, grp)"
    "  SELECT study.id, researcher.id, 'admin' FROM study, researcher"
    "  ON CONFLICT DO NOTHING RETURNING 1),"
    " site_page_texts AS ("
    "  UPDATE site_pages p SET body = v.body, updated_at = now()"
    "    FROM (VALUES"
    "  ('faq', '## What is studyhub?\n"
    "\n"
    "studyhub lets families take part in child development research from home. Scientists at universities run short studies: games, stories and videos that you do with your child on a computer or phone.\n"
    "\n"
    "## Who can take part?\n"
    "\n"
    "Families with children of the ages a study asks for, and sometimes adults. Each study says which ages it is for; the [studies page](/studies/) lists them by age.\n"
    "\n"
    "## Is it safe?\n"
    "\n"
    "Researchers see only what you agree to share. Before a study starts, you are asked for your consent; you can stop at any time, and you can ask us to delete your data.\n"
    "\n"
    "## How long does a study take?\n"
    "\n"
    "Most take 5 to 20 minutes. The study page tells you how long.\n"
    "\n"
    "## I have a problem\n"
    "\n"
    "Please [write to us](/support/).'),"
    "  ('privacy', '## What we collect\n"
    "\n"
    "Your email address and name, your children''s first names and birthdays, the answers you give about your family if you choose to, and what you record in a study (sometimes webcam video), only after you consent.\n"
    "\n"
    "## Who sees it\n"
    "\n"
    "Only the researchers of the study you take part in, and only what your consent allows. We never sell your data.\n"
    "\n"
    "## Your rights\n"
    "\n"
    "You can download your data, change it, or delete your account and everything in it from your [account page](/account/). Questions: [contact us](/support/).'),"
    "  ('terms', 'By using studyhub you agree to:\n"
    "\n"
    "1. Give true information about yourself and your children.\n"
    "2. Take part only with children you are the parent or guardian of.\n"
    "3. Not share study materials or try to get around the site''s protections.\n"
    "\n"
    "Researchers agree to follow their ethics board''s approved protocol and the site''s rules for handling families'' data.\n"
    "\n"
    "The site is offered as is. We may change these terms; the date of the last change is kept with the page.'),"
    "  ('scientists', '## Run your study on studyhub\n"
    "\n"
    "Labs at research institutions can run studies online: build a study with the experiment runner, submit it for review, and reach families across the country.\n"
    "\n"
    "1. [Create an account](/signup/) and ask to join or create your lab.\n"
    "2. Set up two-factor authentication.\n"
    "3. Design your study, preview it, and submit it for review.\n"
    "\n"
    "Every study needs the approval of your institution''s ethics board.'),"
    "  ('resources', '## For families\n"
    "\n"
    "- Activities to do with your child while you wait for the next study.\n"
    "- What the research you took part in found: see [publications](/publications/).\n"
    "\n"
    "## For researchers\n"
    "\n"
    "- The documentation of the experiment runner and its frames.\n"
    "- Templates of consent forms.'),"
    "  ('publications', 'Research that used studyhub will be listed here as it is published.\n"
    "\n"
    "If your lab published a paper with data collected on studyhub, [tell us](/support/) and we will add it.'),"
    "  ('contact', 'For help with the site or your account, use the [support form](/support/).\n"
    "\n"
    "For a question about a study, write to its researchers: their contact is on the study''s page.')"
    "    ) v (slug, body)"
    "   WHERE p.slug = v.slug AND p.body = ''"
    "  RETURNING 1),"
    " study_log AS ("
    "  INSERT INTO study_logs (study_id, user_id, action, extra)"
    "  SELECT study.id, researcher.id, 'active',"
    "         '{\"comments\": \"created by seed-demo\"}'"
    "    FROM study, researcher WHERE study.inserted"
    "  RETURNING 1)"
    "SELECT lab.uuid, study.uuid, child.uuid, researcher.inserted,"
    "       (SELECT inserted FROM site_admin), participant.inserted"
    "  FROM lab, study, child, researcher, participant",
};

static const struct pg_stmt seed_any_user_stmt = {
    "seed_any_user", "SELECT EXISTS (SELECT 1 FROM users)",
};

/* One seed-demo in flight. */
struct seed_cmd {
    struct admin_conn *c;         /* borrowed until admin_finish */
    struct app *app;              /* borrowed */
    bool with_admin;              /* the listener is loopback */
    char base[256];               /* absolute base URL for printed links */
    char h_res[AUTH_PASSWORD_HASH_MAX];   /* password hashes */
    char h_adm[AUTH_PASSWORD_HASH_MAX];
    char h_par[AUTH_PASSWORD_HASH_MAX];
    char study[37];               /* the demo study's uuid, once written */
    int file;                     /* the demo runner file being installed */
    char *body;                   /* owned: the templated file storage_put is
                                     writing (it borrows the bytes) */
};

/* The demo runner (static/runners/demo, loaded with the pages but served
 * by no route): installed as the demo study's build, so a newcomer can
 * take part at once with no build and no network.  index.html gets the
 * study's prefix, as build.sh does. */
static const struct {
    const char *src;              /* in the static site */
    const char *dest;             /* under experiments/<uuid>/ */
    const char *type;
    bool templated;               /* @PREFIX@ -> /studies/<uuid>/ */
} demo_runner[] = {
    { "/runners/demo/app/index.html.in", "index.html", "text/html; charset=utf-8", true },
    { "/runners/demo/app/runner.js", "assets/runner-1.js", "text/javascript; charset=utf-8", false },
    { "/runners/demo/app/runner.css", "assets/runner-1.css", "text/css; charset=utf-8", false },
};
#define DEMO_RUNNER_FILES (int)(sizeof demo_runner / sizeof demo_runner[0])

/* text with every @PREFIX@ replaced; NULL when out of memory. */
static char *demo_template(const unsigned char *text, size_t len, const char *prefix,
                           size_t *out_len)
{
    static const char mark[] = "@PREFIX@";
    size_t n = 0, plen = strlen(prefix), cap = len + 1;

    for (size_t i = 0; i + sizeof mark - 1 <= len; i++)
        if (memcmp(text + i, mark, sizeof mark - 1) == 0)
            cap += plen;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        if (i + sizeof mark - 1 <= len && memcmp(text + i, mark, sizeof mark - 1) == 0) {
            memcpy(out + n, prefix, plen);
            n += plen;
            i += sizeof mark - 1;
        } else {
            out[n++] = (char)text[i++];
        }
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

static void seed_free(struct seed_cmd *s)
{
    free(s->body);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

static void demo_install_next(struct seed_cmd *s);

static void demo_file_put(const struct storage_result *r, void *arg)
{
    struct seed_cmd *s = arg;

    if (r->err) {
        admin_printf(s->c, "demo runner    not installed: %s\n",
                     r->error ? r->error : "storage error");
        admin_finish(s->c, NULL);
        seed_free(s);
        return;
    }
    free(s->body);
    s->body = NULL;
    s->file++;
    demo_install_next(s);
}

/* One file after the other; the last prints the line and finishes. */
static void demo_install_next(struct seed_cmd *s)
{
    struct admin_conn *c = s->c;

    if (s->file == DEMO_RUNNER_FILES) {
        admin_printf(c, "demo runner    installed as the study's build (static/runners/demo)\n");
        admin_finish(c, NULL);
        seed_free(s);
        return;
    }
    const struct static_file *f = s->app->site
        ? static_site_find(s->app->site, demo_runner[s->file].src) : NULL;
    if (!f || !s->app->storage) {
        admin_printf(c, "demo runner    not installed: %s is not in STATIC_DIR\n",
                     demo_runner[s->file].src);
        admin_finish(c, NULL);
        seed_free(s);
        return;
    }
    char *key = util_asprintf("experiments/%s/%s", s->study, demo_runner[s->file].dest);
    char *prefix = util_asprintf("/studies/%s/", s->study);
    size_t len = f->len;
    if (key && prefix && demo_runner[s->file].templated)
        s->body = demo_template(f->data, f->len, prefix, &len);
    /* storage_put borrows the bytes until its callback: the site's stay
     * loaded, the templated copy is s->body. */
    const void *data = demo_runner[s->file].templated ? (const void *)s->body : f->data;
    struct storage_op *op = key && data
        ? storage_put(s->app->storage, key, data, len, demo_runner[s->file].type,
                      demo_file_put, s)
        : NULL;
    free(key);
    free(prefix);
    if (!op) {
        admin_printf(c, "demo runner    not installed: out of memory\n");
        admin_finish(c, NULL);
        seed_free(s);
    }
}

/* Only a loopback listener may get a site admin with a published password. */
static bool listens_on_loopback(const struct config *cfg)
{
    const char *a = cfg->listen_addr ? cfg->listen_addr : "";
    return strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0;
}

/* A login line: the demo password for an account made now, else a note
 * that the existing one was left alone. */
static void seed_login(struct admin_conn *c, const char *what, const char *email,
                       const char *password, const char *inserted, const char *role)
{
    if (inserted[0] == 't')
        admin_printf(c, "%-14s %s  password %s%s\n", what, email, password, role);
    else
        admin_printf(c, "%-14s %s  (existing account: password unchanged)%s\n", what,
                     email, role);
}

/* BASE_URL, or the address the server listens on. */
static void seed_base_url(const struct app *app, char *out, size_t len)
{
    const struct config *cfg = app->cfg;
    if (cfg->base_url && cfg->base_url[0]) {
        snprintf(out, len, "%s", cfg->base_url);
        size_t n = strlen(out);
        if (n > 0 && out[n - 1] == '/')
            out[n - 1] = '\0';
        return;
    }
    const char *host = cfg->listen_addr;
    if (!host || !host[0] || strcmp(host, "0.0.0.0") == 0 ||
        strcmp(host, "::") == 0)
        host = "127.0.0.1";
    int port = app->http ? http_server_port(app->http) : (int)cfg->listen_port;
    snprintf(out, len, strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d",
             host, port);
}

static void seed_done(PGresult *res, void *arg)
{
    struct seed_cmd *s = arg;
    struct admin_conn *c = s->c;

    if (!res) {
        admin_finish(c, "database unavailable");
        goto out;
    }
    if (!pg_ok(res) || PQntuples(res) != 1) {
        admin_finish(c, pg_ok(res) ? "seed returned no row"
                                   : PQresultErrorMessage(res));
        goto out;
    }
    const char *lab = PQgetvalue(res, 0, 0);
    const char *study = PQgetvalue(res, 0, 1);
    const char *child = PQgetvalue(res, 0, 2);
    admin_printf(c, "lab            Demo Lab %s (approved to test)\n", lab);
    seed_login(c, "researcher", SEED_RESEARCHER_EMAIL, SEED_RESEARCHER_PASSWORD,
               PQgetvalue(res, 0, 3), "  (lab admin)");
    if (!s->with_admin)
        admin_printf(c, "site admin     not made: the server listens on %s, not"
                     " on loopback\n", s->app->cfg->listen_addr);
    else if (PQgetisnull(res, 0, 4))
        admin_printf(c, "site admin     none\n");
    else
        seed_login(c, "site admin", SEED_ADMIN_EMAIL, SEED_ADMIN_PASSWORD,
                   PQgetvalue(res, 0, 4), "");
    seed_login(c, "participant", SEED_PARTICIPANT_EMAIL, SEED_PARTICIPANT_PASSWORD,
               PQgetvalue(res, 0, 5), "");
    admin_printf(c, "study          %s (active, public, built)\n", study);
    admin_printf(c, "child          %s (Sally)\n", child);
    admin_printf(c, "participate    %s/studies/%s/%s/\n", s->base, study, child);
    snprintf(s->study, sizeof s->study, "%s", study);
    s->file = 0;
    demo_install_next(s);
    return;
out:
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

/* Hashes the demo passwords (about 0.1 s of CPU on the loop, acceptable
 * for a one-off operator command) and writes the data set. */
static void seed_write(struct seed_cmd *s)
{
    char exit_url[300];
    struct admin_conn *c = s->c;

    if (auth_password_hash(SEED_RESEARCHER_PASSWORD, s->h_res, sizeof s->h_res) ||
        auth_password_hash(SEED_ADMIN_PASSWORD, s->h_adm, sizeof s->h_adm) ||
        auth_password_hash(SEED_PARTICIPANT_PASSWORD, s->h_par, sizeof s->h_par)) {
        admin_finish(c, "password hashing failed");
        goto fail;
    }
    /* upstream's default exit_url: BASE_URL + "studies/history/" */
    snprintf(exit_url, sizeof exit_url, "%s/studies/history/", s->base);
    const char *p[6] = { s->h_res, s->h_adm, s->h_par, seed_structure, exit_url,
                         s->with_admin ? "t" : "f" };
    if (pg_exec(s->app->pg, &seed_demo_stmt, 6, p, seed_done, s) != 0) {
        admin_finish(c, "database unavailable");
        goto fail;
    }
    return;
fail:
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

/* --if-empty: seed only a database without users. */
static void seed_any_user_done(PGresult *res, void *arg)
{
    struct seed_cmd *s = arg;

    if (!res || !pg_ok(res) || PQntuples(res) != 1) {
        admin_finish(s->c, res ? PQresultErrorMessage(res) : "database unavailable");
        free(s);
        return;
    }
    if (PQgetvalue(res, 0, 0)[0] == 't') {
        admin_printf(s->c, "demo seed skipped: the database already has users"
                     " (`studyhubctl seed-demo` adds what is missing)\n");
        admin_finish(s->c, NULL);
        free(s);
        return;
    }
    seed_write(s);
}

/* seed-demo [--if-empty] */
static void seed_cmd(struct admin_conn *c, int argc, char **argv,
                     struct app *app)
{
    struct seed_cmd *s = NULL;
    bool if_empty = argc == 2 && strcmp(argv[1], "--if-empty") == 0;

    if (argc != 1 && !if_empty) {
        admin_finish(c, "usage: seed-demo [--if-empty]");
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        admin_finish(c, "out of memory");
        return;
    }
    s->c = c;
    s->app = app;
    s->with_admin = listens_on_loopback(app->cfg);
    seed_base_url(app, s->base, sizeof s->base);
    if (!if_empty) {
        seed_write(s);
        return;
    }
    if (pg_exec(app->pg, &seed_any_user_stmt, 0, NULL, seed_any_user_done, s) != 0) {
        admin_finish(c, "database unavailable");
        free(s);
    }
}

void seed_register(struct admin_server *srv)
{
    admin_register(srv, "seed-demo",
                   "seed-demo [--if-empty]: create or refresh the demo lab, users, child"
                   " and study (never an existing password; no site admin off loopback)",
                   seed_cmd);
}
