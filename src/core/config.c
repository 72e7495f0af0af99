/* config: the one table of environment variables.  The server, --help and
 * the README's configuration section are all generated from it. */
#include "studyhub/core/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "studyhub/core/log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

enum config_kind { CFG_STR, CFG_INT, CFG_BOOL };

struct config_var {
    const char *name;       /* environment variable */
    const char *def;        /* default, as text */
    const char *help;       /* one line for --help and the README */
    enum config_kind kind;
    size_t offset;          /* into struct config */
    long min, max;          /* CFG_INT bounds, inclusive */
    /* Extra check of the parsed value; writes err and returns -1. */
    int (*check)(struct config *cfg, const char *value, char *err, size_t errlen);
};

static int check_ip(struct config *cfg, const char *v, char *err, size_t n);
static int check_redis_url(struct config *cfg, const char *v, char *err, size_t n);
static int check_log_level(struct config *cfg, const char *v, char *err, size_t n);
static int check_base_url(struct config *cfg, const char *v, char *err, size_t n);
static int check_runner_base_url(struct config *cfg, const char *v, char *err, size_t n);
static int check_cookie_secure(struct config *cfg, const char *v, char *err, size_t n);
static int check_smtp_url(struct config *cfg, const char *v, char *err, size_t n);
static int check_smtp_starttls(struct config *cfg, const char *v, char *err, size_t n);
static int check_build_runner(struct config *cfg, const char *v, char *err, size_t n);
static int check_totp_key(struct config *cfg, const char *v, char *err, size_t n);
static int check_trusted_proxies(struct config *cfg, const char *v, char *err, size_t n);
static int check_build_sandbox(struct config *cfg, const char *v, char *err, size_t n);
static int check_ro_paths(struct config *cfg, const char *v, char *err, size_t n);
static int check_support_email(struct config *cfg, const char *v, char *err, size_t n);

#define STR(field) CFG_STR, offsetof(struct config, field), 0, 0
#define INT(field, lo, hi) CFG_INT, offsetof(struct config, field), lo, hi
#define BOOL(field) CFG_BOOL, offsetof(struct config, field), 0, 1

static const struct config_var vars[] = {
    { "LISTEN_ADDR", "127.0.0.1", "numeric IP address the HTTP server binds",
      STR(listen_addr), check_ip },
    { "LISTEN_PORT", "8000", "TCP port of the HTTP server (0: any free port)",
      INT(listen_port, 0, 65535), NULL },
    { "BASE_URL", "", "absolute URL prefix of links in API documents and emails (empty: http://LISTEN_ADDR:port; required when LISTEN_ADDR is not loopback)",
      STR(base_url), check_base_url },
    { "RUNNER_BASE_URL", "", "origin of the runner's own host name (e.g. https://lookit-runner.example), where the unchanged upstream runner runs with runner-scoped cookies; empty: the runner runs sandboxed on this origin",
      STR(runner_base_url), check_runner_base_url },
    { "DATABASE_URL", "host=127.0.0.1 port=5432 dbname=studyhub user=studyhub",
      "PostgreSQL conninfo or URI; use a numeric host (libpq resolves names synchronously)",
      STR(database_url), NULL },
    { "PG_POOL_SIZE", "4", "PostgreSQL connections in the pool",
      INT(pg_pool_size, 1, 256), NULL },
    { "PG_GROUP_MAX", "8", "most of the runner's waiting PATCH writes one connection commits as one transaction (group commit; 1: each alone)",
      INT(pg_group_max, 1, 64), NULL },
    { "PG_ACQUIRE_TIMEOUT_MS", "2000", "longest wait for a PostgreSQL connection before answering 503",
      INT(pg_acquire_timeout_ms, 10, 600000), NULL },
    { "PG_QUERY_TIMEOUT_MS", "5000", "statement_timeout of the pool's sessions; a query with no answer 1 s later is dropped with its session (503) (0: none)",
      INT(pg_query_timeout_ms, 0, 86400000), NULL },
    { "REDIS_URL", "redis://127.0.0.1:6379/0", "Redis address as redis://[:PASSWORD@]NUMERIC-IP:PORT/DB (the password is sent with AUTH)",
      STR(redis_url), check_redis_url },
    { "REDIS_TIMEOUT_MS", "2000", "longest wait for a Redis reply before answering 503",
      INT(redis_timeout_ms, 10, 600000), NULL },
    { "MAX_HEADER_BYTES", "16384", "largest request line plus headers, in bytes (431 above; past 4 times this a JSON:API 400 and the connection is closed)",
      INT(max_header_bytes, 1024, 1048576), NULL },
    { "MAX_BODY_BYTES", "4194304", "largest request body, in bytes (413 above)",
      INT(max_body_bytes, 1024, 1073741824), NULL },
    { "REQUEST_HEADER_TIMEOUT_S", "10", "seconds from a request's first byte until the whole request must be in, plus 1 s per REQUEST_MIN_RATE bytes received; slower requests are closed",
      INT(request_header_timeout_s, 1, 3600), NULL },
    { "REQUEST_MIN_RATE", "1024", "bytes a second a request must keep up beyond REQUEST_HEADER_TIMEOUT_S (0: no allowance for bodies)",
      INT(request_min_rate, 0, 1073741824), NULL },
    { "MAX_CONNS_PER_ADDR", "256", "client connections one IP address may hold at once (0: no cap; behind a reverse proxy every client has its address)",
      INT(max_conns_per_addr, 0, 1000000), NULL },
    { "IDLE_TIMEOUT_S", "60", "seconds a client connection may stay silent (between requests, or mid-request)",
      INT(idle_timeout_s, 1, 86400), NULL },
    { "DRAIN_TIMEOUT_S", "10", "seconds in-flight work may take after SIGTERM before exit",
      INT(drain_timeout_s, 0, 3600), NULL },
    { "ADMIN_SOCKET", "var/studyhub.sock", "path of the admin Unix socket (mode 0600)",
      STR(admin_socket), NULL },
    { "LOG_LEVEL", "info", "least severe level logged: debug, info, warn or error",
      STR(log_level), check_log_level },
    { "SESSION_TTL_S", "1209600", "lifetime of a login session in Redis, in seconds",
      INT(session_ttl_s, 60, 31536000), NULL },
    { "MIGRATE", "1", "apply the sql/ migrations at start (1 or 0)",
      BOOL(migrate), NULL },
    { "DEBUG_ROUTES", "0", "serve the /debug/ routes: sleep, echo, page (tests only; 1 or 0)",
      BOOL(debug_routes), NULL },
    { "METRICS_TOKEN", "", "bearer token of GET /metrics for callers other than loopback (empty: loopback only)",
      STR(metrics_token), NULL },
    { "TASK_CONCURRENCY", "4", "tasks this server runs at once (0: none; it still enqueues)",
      INT(task_concurrency, 0, 256), NULL },
    { "TASK_LEASE_S", "60", "seconds a running task's lease lasts before another server may resume it",
      INT(task_lease_s, 3, 3600), NULL },
    { "TASK_POLL_S", "15", "seconds between queue polls (LISTEN/NOTIFY wakes the runner sooner)",
      INT(task_poll_s, 1, 3600), NULL },
    { "SCHED_TIME_ZONE", "America/New_York", "IANA time zone of the scheduled jobs' wall-clock times",
      STR(sched_time_zone), NULL },
    { "SCHED_JOBS", "", "per-job schedule overrides: job=HH:MM[:SS] or job=off, comma-separated",
      STR(sched_jobs), NULL },
    { "COOKIE_SECURE", "auto", "Secure flag of the session cookies: 1, 0, or auto (when BASE_URL or X-Forwarded-Proto is https)",
      STR(cookie_secure), check_cookie_secure },
    { "TRUSTED_PROXIES", "", "comma-separated IPs or CIDRs of reverse proxies: only from them is X-Forwarded-For believed (its right-most untrusted address is the client)",
      STR(trusted_proxies), check_trusted_proxies },
    { "LOGIN_RATE_WINDOW_S", "900", "seconds a failure counter (per account, per address) is kept after its last failure; also the window of MAIL_RATE_*",
      INT(login_rate_window_s, 1, 86400), NULL },
    { "LOGIN_DELAY_FREE_ACCOUNT", "3", "failed logins of one account before each further one delays its next login",
      INT(login_delay_free_account, 0, 1000000), NULL },
    { "LOGIN_DELAY_FREE_ADDR", "20", "failed logins from one client address before each further one delays its next login (many people may share an address)",
      INT(login_delay_free_addr, 0, 1000000), NULL },
    { "LOGIN_DELAY_FIRST_MS", "1000", "the first login delay of an account or address past its free failures, doubled per further failure",
      INT(login_delay_first_ms, 1, 3600000), NULL },
    { "LOGIN_DELAY_MAX_S", "60", "cap of the login delay (LOGIN_DELAY_FIRST_MS, doubled per further failure) of an account or address",
      INT(login_delay_max_s, 1, 3600), NULL },
    { "MAIL_RATE_ACCOUNT_MAX", "10", "account emails (verification, reset) asked for per account per window before 429",
      INT(mail_rate_account_max, 1, 1000000), NULL },
    { "MAIL_RATE_ADDR_MAX", "100", "sign-ups and account emails asked for per client address per window before 429",
      INT(mail_rate_addr_max, 1, 1000000), NULL },
    { "TWO_FACTOR_MAX_FAILURES", "5", "wrong two-factor codes per user (login, confirm, disable and recovery codes together) before a lockout",
      INT(two_factor_max_failures, 1, 1000), NULL },
    { "TWO_FACTOR_LOCKOUT_S", "900", "seconds every two-factor code check of a user answers 429 after too many wrong codes",
      INT(two_factor_lockout_s, 1, 86400), NULL },
    { "TOKEN_TTL_DAYS", "90", "days an API token works after it is made",
      INT(token_ttl_days, 1, 3650), NULL },
    { "PASSWORD_RESET_TTL_S", "3600", "seconds a password reset link stays valid",
      INT(password_reset_ttl_s, 60, 604800), NULL },
    { "EMAIL_VERIFY_TTL_S", "259200", "seconds an email verification link stays valid",
      INT(email_verify_ttl_s, 60, 2592000), NULL },
    { "TOTP_ISSUER", "studyhub", "issuer name of two-factor secrets, shown by authenticator apps",
      STR(totp_issuer), NULL },
    { "TOTP_SECRET_KEY", "", "32-byte key (64 hex digits or base64) that encrypts two-factor secrets at rest (AES-256-GCM); required: the server does not start without it",
      STR(totp_secret_key), check_totp_key },
    { "SMTP_URL", "", "SMTP relay as smtp://[user:pass@]host:port or smtps://...; empty: write .eml files to MAIL_DIR",
      STR(smtp_url), check_smtp_url },
    { "SMTP_STARTTLS", "auto", "STARTTLS on smtp:// URLs: require, try, off, or auto (require unless the host is loopback)",
      STR(smtp_starttls), check_smtp_starttls },
    { "MAIL_DIR", "var/mail", "folder of the .eml files written when SMTP_URL is empty",
      STR(mail_dir), NULL },
    { "MAIL_FROM", "studyhub <noreply@studyhub.invalid>", "From header and envelope sender of every email",
      STR(mail_from), NULL },
    { "MAIL_POLL_S", "10", "seconds between outbox polls (NOTIFY wakes the sender sooner)",
      INT(mail_poll_s, 1, 3600), NULL },
    { "MAIL_BATCH", "10", "emails one server sends at once",
      INT(mail_batch, 1, 1000), NULL },
    { "MAIL_LEASE_S", "300", "seconds a claimed email is reserved for its sender (must exceed MAIL_SMTP_TIMEOUT_S + 10)",
      INT(mail_lease_s, 15, 86400), NULL },
    { "MAIL_SMTP_TIMEOUT_S", "60", "longest SMTP attempt, in seconds",
      INT(mail_smtp_timeout_s, 1, 3600), NULL },
    { "MAIL_RETRY_BASE_S", "30", "delay before the first retry of an email, doubled per attempt (at most 6 h)",
      INT(mail_retry_base_s, 1, 86400), NULL },
    { "MAIL_MAX_ATTEMPTS", "8", "attempts before an email is given up (failed_at set)",
      INT(mail_max_attempts, 1, 100), NULL },
    { "GRAPHVIZ_DOT", "dot", "Graphviz's dot program, for GET /api/v1/workflow?format=svg (empty: SVG off, 501)",
      STR(graphviz_dot), NULL },
    { "STORAGE_URL", "file://var/storage", "object storage: file://DIR (served by this server through signed links), s3://BUCKET or gs://BUCKET",
      STR(storage_url), NULL },
    { "S3_ENDPOINT", "", "S3 API origin, e.g. http://127.0.0.1:9000 (empty: AWS, or storage.googleapis.com for gs://)",
      STR(s3_endpoint), NULL },
    { "S3_REGION", "", "S3 region (empty: us-east-1; auto for gs://)",
      STR(s3_region), NULL },
    { "S3_ACCESS_KEY_ID", "", "access key of s3:// and gs:// (HMAC key) storage",
      STR(s3_access_key_id), NULL },
    { "S3_SECRET_ACCESS_KEY", "", "secret key of s3:// and gs:// storage",
      STR(s3_secret_access_key), NULL },
    { "S3_PATH_STYLE", "0", "S3 URLs as endpoint/bucket/key instead of bucket.endpoint/key (1 or 0)",
      BOOL(s3_path_style), NULL },
    { "STORAGE_FSYNC", "0", "fsync file:// objects before they are renamed into place (1 or 0)",
      BOOL(storage_fsync), NULL },
    { "STATIC_DIR", "static", "folder of the web pages and their assets, loaded into memory at start (relative: to the working directory)",
      STR(static_dir), NULL },
    { "STORAGE_LINK_SECRET", "", "HMAC key of file:// download links; empty: derived from TOTP_SECRET_KEY, which every instance shares",
      STR(storage_link_secret), NULL },
    { "PIPE_WEBHOOK_KEY", "", "key of Pipe's webhook POST /exp/renamevideo/ (empty: every call refused)",
      STR(pipe_webhook_key), NULL },
    { "AWS_LAMBDA_SECRET_ACCESS_KEY", "", "HMAC key of POST /api/v1/video/ from the upload Lambda (empty: every call refused)",
      STR(aws_lambda_secret_access_key), NULL },
    { "VIDEO_ZIP_PART_MB", "8", "multipart part size of video zips in MiB (memory is about 3 parts; a zip has at most 10000 parts)",
      INT(video_zip_part_mb, 5, 512), NULL },
    { "STALE_UPLOAD_AGE_S", "86400", "age in seconds of incomplete multipart uploads that abort_stale_uploads aborts",
      INT(stale_upload_age_s, 60, 31536000), NULL },
    { "BUILD_ROOT", "var/builds", "folder of the experiment builder: checkouts/<sha>/ and builds/<task>/",
      STR(build_root), NULL },
    { "BUILD_RUNNER", "local", "how runners are built: local (the checkout's build.sh as a child) or docker",
      STR(build_runner), check_build_runner },
    { "RUNNER_REPO_URL", "https://github.com/lookit/ember-lookit-frameplayer",
      "experiment runner repository of studies whose metadata names none",
      STR(runner_repo_url), NULL },
    { "RUNNER_REPO_ALLOW", "https://github.com/", "comma-separated URL prefixes a study's player_repo_url must start with (an outer fence: any repository but RUNNER_REPO_URL also needs a reviewer's approval)",
      STR(runner_repo_allow), NULL },
    { "GITHUB_API_URL", "https://api.github.com", "origin of the GitHub REST API (default branch and head commit of runner repositories)",
      STR(github_api_url), NULL },
    { "GITHUB_TOKEN", "", "GitHub token for API calls (empty: anonymous, 60 calls an hour)",
      STR(github_token), NULL },
    { "BUILD_TIMEOUT_S", "1800", "seconds a runner build may take before its whole process group is killed",
      INT(build_timeout_s, 1, 86400), NULL },
    { "BUILD_SANDBOX", "bwrap", "sandbox of BUILD_RUNNER=local: bwrap (bubblewrap namespaces; builds are refused when it does not work) or none (build.sh runs on the host: trusted runners only)",
      STR(build_sandbox), check_build_sandbox },
    { "BWRAP_BIN", "bwrap", "bubblewrap program of BUILD_SANDBOX=bwrap",
      STR(bwrap_bin), NULL },
    { "BUILD_NETWORK", "0", "network access for builds (1 or 0); 1 lets build.sh reach the internet and every service on the host's loopback",
      BOOL(build_network), NULL },
    { "BUILD_UID", "65534", "host user and group id a root server runs builds as (local: before bwrap; docker: --user)",
      INT(build_uid, 1, 4294967294L), NULL },
    { "BUILD_MEMORY_MB", "4096", "private writable memory of each build process in MiB (RLIMIT_DATA; docker: --memory)",
      INT(build_memory_mb, 64, 1048576), NULL },
    { "BUILD_MAX_PROCS", "512", "processes of a build (RLIMIT_NPROC of BUILD_UID; docker: --pids-limit)",
      INT(build_max_procs, 8, 1000000), NULL },
    { "BUILD_MAX_OUTPUT_MB", "2048", "disk of a build in MiB: each file it writes, its /tmp, and its scratch and output folders together (measured every 5 s; killed past it)",
      INT(build_max_output_mb, 1, 1048576), NULL },
    { "BUILD_RO_PATHS", "", "extra host folders, comma-separated, bound read-only into the sandbox at the same place (e.g. /opt/node)",
      STR(build_ro_paths), check_ro_paths },
    { "BUILD_FETCH_TIMEOUT_S", "300", "seconds one attempt of a GitHub API call or archive download may take",
      INT(build_fetch_timeout_s, 1, 3600), NULL },
    { "DOCKER_BIN", "docker", "docker client of BUILD_RUNNER=docker and cleanup_docker_images",
      STR(docker_bin), NULL },
    { "BUILDER_IMAGE", "studyhub-builder:latest", "tag of the builder image (BUILD_RUNNER=docker)",
      STR(builder_image), NULL },
    { "BUILDER_CONTEXT", "", "docker build context of the builder image (empty: the runner checkout)",
      STR(builder_context), NULL },
    { "BUILD_ENV", "", "extra KEY=VALUE pairs, comma-separated, given to every build (Sentry DSN, recording-service settings)",
      STR(build_env), NULL },
    { "MAX_ARCHIVE_BYTES", "1073741824", "largest runner archive in bytes, downloaded or unpacked",
      INT(max_archive_bytes, 1024, 68719476736L), NULL },
    { "MAX_ARCHIVE_FILES", "100000", "most entries in a runner archive",
      INT(max_archive_files, 1, 10000000), NULL },
    { "BUILD_UPLOAD_CONCURRENCY", "8", "uploads and copies one build runs at once",
      INT(build_upload_concurrency, 1, 64), NULL },
    /* Issue 15, messages (tasks/announce.c). */
    { "NOTIFY_WINDOW_S", "900", "seconds of the window of edit notifications of one study to one researcher: the first goes at once, the rest of the window are gathered into one email at its end (0: one email per edit)",
      INT(notify_window_s, 0, 86400), NULL },
    /* Issue 18, the support page (domain/sitepages.c). */
    { "SUPPORT_EMAIL", "support@studyhub.invalid", "address the support page's messages are sent to (through the mail outbox)",
      STR(support_email), check_support_email },
    { "SUPPORT_RATE_MAX", "5", "support messages per client address, and per sender's email, per LOGIN_RATE_WINDOW_S before 429",
      INT(support_rate_max, 1, 1000000), NULL },
};

#define NVARS (sizeof vars / sizeof vars[0])

static void set_err(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static int check_ip(struct config *cfg, const char *v, char *err, size_t n)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1)
        return 0;
    set_err(err, n, "LISTEN_ADDR: '%s' is not a numeric IP address", v);
    return -1;
}

/* redis://[:PASSWORD@]HOST[:PORT][/DB] with a numeric host: hiredis
 * connects with getaddrinfo, which would block the loop on a name.  The
 * password (no user name) may hold any character but '@' and '/'; it is
 * sent with AUTH on every connect. */
static int check_redis_url(struct config *cfg, const char *v, char *err, size_t n)
{
    const char *p = v, *host, *end, *at;
    unsigned char buf[sizeof(struct in6_addr)];
    long port = 6379, db = 0;
    char *e;

    free(cfg->redis_password);
    cfg->redis_password = NULL;
    if (strncmp(p, "redis://", 8) != 0)
        goto bad;
    host = p + 8;
    if ((at = strchr(host, '@'))) {
        /* ":PASSWORD@": the user part must be empty. */
        if (host[0] != ':' || at == host + 1 || memchr(host, '/', (size_t)(at - host)))
            goto bad;
        cfg->redis_password = strndup(host + 1, (size_t)(at - host - 1));
        if (!cfg->redis_password)
            goto bad;
        host = at + 1;
    }
    end = host + strcspn(host, ":/");
    if (end == host || (size_t)(end - host) >= 64)
        goto bad;
    free(cfg->redis_host);
    cfg->redis_host = strndup(host, (size_t)(end - host));
    if (!cfg->redis_host || inet_pton(AF_INET, cfg->redis_host, buf) != 1)
        goto bad;
    p = end;
    if (*p == ':') {
        errno = 0;
        port = strtol(p + 1, &e, 10);
        if (errno || e == p + 1 || port < 1 || port > 65535)
            goto bad;
        p = e;
    }
    if (*p == '/' && p[1] != '\0') {
        errno = 0;
        db = strtol(p + 1, &e, 10);
        if (errno || e == p + 1 || *e != '\0' || db < 0 || db > 1000)
            goto bad;
        p = e;
    } else if (*p == '/') {
        p++;
    }
    if (*p != '\0')
        goto bad;
    cfg->redis_port = port;
    cfg->redis_db = db;
    return 0;
bad:
    /* Not echoed: the URL may carry a password. */
    set_err(err, n, "REDIS_URL: not redis://[:PASSWORD@]NUMERIC-IP[:PORT][/DB]");
    return -1;
}

/* 64 hex digits or the base64 of 32 bytes.  "" passes here: main refuses
 * to start without a key, with a message of its own. */
static int check_totp_key(struct config *cfg, const char *v, char *err, size_t n)
{
    unsigned char out[48];
    size_t len = strlen(v);

    cfg->totp_key_set = false;
    if (len == 0)
        return 0;
    if (len == 64 && strspn(v, "0123456789abcdefABCDEF") == 64) {
        for (size_t i = 0; i < 32; i++) {
            unsigned x = 0;
            sscanf(v + 2 * i, "%2x", &x);
            cfg->totp_key[i] = (unsigned char)x;
        }
        cfg->totp_key_set = true;
        return 0;
    }
    /* 44 characters with one '=': EVP_DecodeBlock counts the padding's
     * byte, so 33 means 32. */
    if (len == 44 && v[43] == '=' && v[42] != '=' &&
        EVP_DecodeBlock(out, (const unsigned char *)v, 44) == 33) {
        memcpy(cfg->totp_key, out, 32);
        cfg->totp_key_set = true;
        OPENSSL_cleanse(out, sizeof out);
        return 0;
    }
    OPENSSL_cleanse(out, sizeof out);
    /* Not echoed: it is a secret. */
    set_err(err, n, "TOTP_SECRET_KEY: not 32 bytes as 64 hex digits or base64"
            " (make one with: openssl rand -hex 32)");
    return -1;
}

/* "IP[/BITS],..." of IPv4 and IPv6 addresses, parsed once here. */
static int check_trusted_proxies(struct config *cfg, const char *v, char *err, size_t n)
{
    const char *p = v;

    cfg->n_trusted_proxies = 0;
    while (*p) {
        char item[64], *slash, *e;
        size_t len = strcspn(p, ",");
        const char *next = p[len] ? p + len + 1 : p + len;
        long bits = -1;

        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0) {
            p = next;
            continue;
        }
        if (len >= sizeof item || cfg->n_trusted_proxies >= CONFIG_MAX_PROXIES)
            goto bad;
        memcpy(item, p, len);
        item[len] = '\0';
        struct config_cidr *c = &cfg->trusted_proxies_list[cfg->n_trusted_proxies];
        memset(c, 0, sizeof *c);
        if ((slash = strchr(item, '/'))) {
            *slash = '\0';
            errno = 0;
            bits = strtol(slash + 1, &e, 10);
            if (errno || e == slash + 1 || *e || bits < 0)
                goto bad;
        }
        if (inet_pton(AF_INET, item, c->addr) == 1) {
            c->family = AF_INET;
            bits = bits < 0 ? 32 : bits;
            if (bits > 32)
                goto bad;
        } else if (inet_pton(AF_INET6, item, c->addr) == 1) {
            c->family = AF_INET6;
            bits = bits < 0 ? 128 : bits;
            if (bits > 128)
                goto bad;
        } else {
            goto bad;
        }
        c->bits = (int)bits;
        cfg->n_trusted_proxies++;
        p = next;
    }
    return 0;
bad:
    set_err(err, n, "TRUSTED_PROXIES: '%s' is not a comma-separated list of at most"
            " %d IP addresses or CIDRs", v, CONFIG_MAX_PROXIES);
    return -1;
}

bool config_addr_in(const struct config_cidr *list, int count, const char *ip)
{
    unsigned char a[16];
    int family;

    if (!ip)
        return false;
    if (inet_pton(AF_INET, ip, a) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, ip, a) == 1)
        family = AF_INET6;
    else
        return false;
    for (int i = 0; i < count; i++) {
        const struct config_cidr *c = &list[i];
        int full = c->bits / 8, rest = c->bits % 8;
        if (c->family != family || memcmp(a, c->addr, (size_t)full) != 0)
            continue;
        if (rest) {
            unsigned char mask = (unsigned char)(0xff << (8 - rest));
            if ((a[full] & mask) != (c->addr[full] & mask))
                continue;
        }
        return true;
    }
    return false;
}

static int check_log_level(struct config *cfg, const char *v, char *err, size_t n)
{
    enum log_level l;
    if (log_level_parse(v, &l) == 0)
        return 0;
    set_err(err, n, "LOG_LEVEL: '%s' is not one of debug, info, warn, error", v);
    return -1;
}

static int check_base_url(struct config *cfg, const char *v, char *err, size_t n)
{
    size_t len = strlen(v);
    if (len == 0)
        return 0;
    if ((strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0) &&
        v[len - 1] != '/')
        return 0;
    set_err(err, n, "BASE_URL: '%s' must start with http:// or https:// and not end in /", v);
    return -1;
}

/* scheme://host[:port] and nothing more: it names an origin. */
static int check_runner_base_url(struct config *cfg, const char *v, char *err, size_t n)
{
    const char *host = strncmp(v, "https://", 8) == 0 ? v + 8
                       : strncmp(v, "http://", 7) == 0 ? v + 7 : NULL;

    (void)cfg;
    if (!*v)
        return 0;
    if (host && *host && !strpbrk(host, "/?#@ \t"))
        return 0;
    set_err(err, n, "RUNNER_BASE_URL: '%s' must be http(s)://host[:port], with no path", v);
    return -1;
}

static int check_cookie_secure(struct config *cfg, const char *v, char *err, size_t n)
{
    if (strcmp(v, "auto") == 0 || strcmp(v, "1") == 0 || strcmp(v, "0") == 0)
        return 0;
    set_err(err, n, "COOKIE_SECURE: '%s' is not auto, 1 or 0", v);
    return -1;
}

static int check_smtp_url(struct config *cfg, const char *v, char *err, size_t n)
{
    if (v[0] == '\0' || (strncmp(v, "smtp://", 7) == 0 && v[7]) ||
        (strncmp(v, "smtps://", 8) == 0 && v[8]))
        return 0;
    /* Not echoed: the URL may carry a password. */
    set_err(err, n, "SMTP_URL: must be empty or start with smtp:// or smtps://");
    return -1;
}

static int check_smtp_starttls(struct config *cfg, const char *v, char *err, size_t n)
{
    if (strcmp(v, "auto") == 0 || strcmp(v, "require") == 0 ||
        strcmp(v, "try") == 0 || strcmp(v, "off") == 0)
        return 0;
    set_err(err, n, "SMTP_STARTTLS: '%s' is not auto, require, try or off", v);
    return -1;
}

static int check_build_runner(struct config *cfg, const char *v, char *err, size_t n)
{
    if (strcmp(v, "local") == 0 || strcmp(v, "docker") == 0)
        return 0;
    set_err(err, n, "BUILD_RUNNER: '%s' is not local or docker", v);
    return -1;
}

static int check_build_sandbox(struct config *cfg, const char *v, char *err, size_t n)
{
    if (strcmp(v, "bwrap") == 0 || strcmp(v, "none") == 0)
        return 0;
    set_err(err, n, "BUILD_SANDBOX: '%s' is not bwrap or none", v);
    return -1;
}

/* BUILD_RO_PATHS: absolute folders below /, without '..' (tasks/sandbox.c
 * checks the same before every build; here a typo stops the start). */
static int check_ro_paths(struct config *cfg, const char *v, char *err, size_t n)
{
    const char *p = v;

    while (*p) {
        size_t len = strcspn(p, ",");
        char item[1024];
        const char *a = p, *b = p + len;

        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        snprintf(item, sizeof item, "%.*s", (int)(b - a), a);
        if (b > a && (item[0] != '/' || strcmp(item, "/") == 0 || strstr(item, "/../") ||
                      (strlen(item) >= 3 && strcmp(item + strlen(item) - 3, "/..") == 0))) {
            set_err(err, n, "BUILD_RO_PATHS: '%s' is not an absolute folder below /", item);
            return -1;
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

static int parse_one(struct config *cfg, const struct config_var *var,
                     const char *value, char *err, size_t n)
{
    char *field = (char *)cfg + var->offset;
    char *end;
    long l;

    switch (var->kind) {
    case CFG_STR: {
        char *copy = strdup(value);
        if (!copy) {
            set_err(err, n, "%s: out of memory", var->name);
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        break;
    }
    case CFG_INT:
        errno = 0;
        l = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            set_err(err, n, "%s: '%s' is not an integer", var->name, value);
            return -1;
        }
        if (l < var->min || l > var->max) {
            set_err(err, n, "%s: %ld is outside %ld..%ld", var->name, l, var->min, var->max);
            return -1;
        }
        *(long *)field = l;
        break;
    case CFG_BOOL:
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0)
            *(bool *)field = true;
        else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || strcmp(value, "no") == 0)
            *(bool *)field = false;
        else {
            set_err(err, n, "%s: '%s' is not 1 or 0", var->name, value);
            return -1;
        }
        break;
    }
    if (var->check)
        return var->check(cfg, value, err, n);
    return 0;
}

/* 127.0.0.0/8 or ::1 (LISTEN_ADDR is already known to be numeric). */
static bool addr_is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, addr, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* Rules between variables, once each has parsed. */
static int check_all(const struct config *cfg, char *err, size_t n)
{
    /* Without BASE_URL, links name the listening address; on a public
     * address that is wrong behind any proxy, and taking the Host header
     * instead would let a client choose where emailed links point. */
    /* Cookies are kept per host name, whatever the port: the runner's
     * origin must be another host, or its page could read the site's. */
    if (cfg->runner_base_url[0]) {
        const char *site = cfg->base_url[0] ? strstr(cfg->base_url, "://") + 3
                                            : cfg->listen_addr;
        const char *runner = strstr(cfg->runner_base_url, "://") + 3;
        size_t sl = strcspn(site, ":/"), rl = strcspn(runner, ":/");
        if (sl == rl && strncasecmp(site, runner, sl) == 0) {
            set_err(err, n, "RUNNER_BASE_URL: its host name must differ from the site's"
                    " (%.*s): browsers share cookies between ports of one host",
                    (int)sl, site);
            return -1;
        }
    }
    if (!cfg->base_url[0] && !addr_is_loopback(cfg->listen_addr)) {
        set_err(err, n, "BASE_URL: must be set when LISTEN_ADDR (%s) is not a loopback"
                " address (it is the origin of every link the server writes)",
                cfg->listen_addr);
        return -1;
    }
    return 0;
}

int config_load(struct config *cfg, config_getenv_fn getenv_fn, void *arg,
                char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NVARS; i++) {
        const char *value = getenv_fn(vars[i].name, arg);
        if (!value)
            value = vars[i].def;
        if (parse_one(cfg, &vars[i], value, err, errlen) < 0) {
            config_cleanup(cfg);
            return -1;
        }
    }
    if (check_all(cfg, err, errlen) < 0) {
        config_cleanup(cfg);
        return -1;
    }
    return 0;
}

void config_cleanup(struct config *cfg)
{
    for (size_t i = 0; i < NVARS; i++) {
        if (vars[i].kind == CFG_STR) {
            char **field = (char **)((char *)cfg + vars[i].offset);
            free(*field);
            *field = NULL;
        }
    }
    free(cfg->redis_host);
    cfg->redis_host = NULL;
    free(cfg->redis_password);
    cfg->redis_password = NULL;
    OPENSSL_cleanse(cfg->totp_key, sizeof cfg->totp_key);
    cfg->totp_key_set = false;
}

void config_print_help(FILE *out)
{
    fprintf(out, "Environment variables (default in brackets):\n");
    for (size_t i = 0; i < NVARS; i++)
        fprintf(out, "  %-22s %s [%s]\n", vars[i].name, vars[i].help, vars[i].def);
}

void config_print_markdown(FILE *out)
{
    fprintf(out, "| variable | default | meaning |\n|---|---|---|\n");
    for (size_t i = 0; i < NVARS; i++)
        fprintf(out, vars[i].def[0] ? "| `%s` | `%s` | %s |\n" : "| `%s` | (empty)%s | %s |\n",
                vars[i].name, vars[i].def, vars[i].help);
}

/* One plain address (no display name): it goes into a To header. */
static int check_support_email(struct config *cfg, const char *v, char *err, size_t n)
{
    const char *at = strchr(v, '@');

    (void)cfg;
    if (at && at != v && at[1] && !strchr(at + 1, '@') && strlen(v) <= 254 &&
        !strpbrk(v, " \t\r\n<>,;\"()"))
        return 0;
    set_err(err, n, "SUPPORT_EMAIL: must be one email address such as support@example.org");
    return -1;
}
