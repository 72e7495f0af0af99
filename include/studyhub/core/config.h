/* config: every environment variable studyhub reads, in one table that the
 * code, `studyhub --help` and the README all come from. */
#ifndef STUDYHUB_CORE_CONFIG_H
#define STUDYHUB_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* One TRUSTED_PROXIES entry: an address and how many leading bits count. */
#define CONFIG_MAX_PROXIES 32
struct config_cidr {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];     /* network order; 4 bytes used for IPv4 */
    int bits;                   /* prefix length */
};

struct config {
    char *listen_addr;          /* LISTEN_ADDR: numeric IP to bind (owned) */
    long listen_port;           /* LISTEN_PORT */
    char *runner_base_url;      /* RUNNER_BASE_URL: the runner's own origin, "" = none (owned) */
    char *base_url;             /* BASE_URL: absolute prefix for links, "" = listen address (owned) */
    char *database_url;         /* DATABASE_URL: libpq conninfo or URI (owned) */
    long pg_pool_size;          /* PG_POOL_SIZE */
    long pg_group_max;          /* PG_GROUP_MAX */
    long pg_acquire_timeout_ms; /* PG_ACQUIRE_TIMEOUT_MS */
    long pg_query_timeout_ms;   /* PG_QUERY_TIMEOUT_MS */
    long request_header_timeout_s; /* REQUEST_HEADER_TIMEOUT_S */
    long request_min_rate;      /* REQUEST_MIN_RATE */
    long max_conns_per_addr;    /* MAX_CONNS_PER_ADDR */
    char *redis_url;            /* REDIS_URL: redis://host:port/db (owned) */
    char *redis_host;           /* parsed from redis_url, numeric (owned) */
    long redis_port;            /* parsed from redis_url */
    long redis_db;              /* parsed from redis_url */
    char *redis_password;       /* parsed from redis_url, NULL = no AUTH (owned; secret) */
    long redis_timeout_ms;      /* REDIS_TIMEOUT_MS */
    long max_header_bytes;      /* MAX_HEADER_BYTES */
    long max_body_bytes;        /* MAX_BODY_BYTES */
    long idle_timeout_s;        /* IDLE_TIMEOUT_S */
    long drain_timeout_s;       /* DRAIN_TIMEOUT_S */
    char *admin_socket;         /* ADMIN_SOCKET: path of the Unix socket (owned) */
    char *log_level;            /* LOG_LEVEL: debug, info, warn, error (owned) */
    long session_ttl_s;         /* SESSION_TTL_S */
    bool migrate;               /* MIGRATE: apply sql/ migrations at start */
    bool debug_routes;          /* DEBUG_ROUTES: enable /debug/ (tests only) */
    char *metrics_token;        /* METRICS_TOKEN: bearer of /metrics off loopback, "" = none (owned) */
    /* Tasks and scheduled jobs (queue/task.c, queue/sched.c). */
    long task_concurrency;      /* TASK_CONCURRENCY: tasks run at once here */
    long task_lease_s;          /* TASK_LEASE_S: default lease of a running task */
    long task_poll_s;           /* TASK_POLL_S: queue poll besides LISTEN */
    char *sched_time_zone;      /* SCHED_TIME_ZONE: IANA zone of job times (owned) */
    char *sched_jobs;           /* SCHED_JOBS: "job=HH:MM[:SS]|off,..." overrides (owned) */
    /* Accounts, sessions and mail (http/auth.c, domain/accounts.c, io/mail.c). */
    char *cookie_secure;        /* COOKIE_SECURE: auto, 1 or 0 (owned) */
    char *trusted_proxies;      /* TRUSTED_PROXIES: as given (owned) */
    struct config_cidr trusted_proxies_list[CONFIG_MAX_PROXIES]; /* parsed from trusted_proxies */
    int n_trusted_proxies;      /* entries used in trusted_proxies_list */
    long login_rate_window_s;   /* LOGIN_RATE_WINDOW_S: life of a failure counter after its last failure */
    long login_delay_free_account; /* LOGIN_DELAY_FREE_ACCOUNT: failures of an account before delays start */
    long login_delay_free_addr; /* LOGIN_DELAY_FREE_ADDR: failures from an address before delays start */
    long login_delay_first_ms;  /* LOGIN_DELAY_FIRST_MS: the first delay, doubled per failure */
    long login_delay_max_s;     /* LOGIN_DELAY_MAX_S: cap of one delay */
    long mail_rate_account_max; /* MAIL_RATE_ACCOUNT_MAX: account emails per account per window */
    long mail_rate_addr_max;    /* MAIL_RATE_ADDR_MAX: sign-ups and account emails per address */
    long two_factor_max_failures; /* TWO_FACTOR_MAX_FAILURES: wrong codes before the lockout */
    long two_factor_lockout_s;  /* TWO_FACTOR_LOCKOUT_S: length of the lockout */
    long token_ttl_days;        /* TOKEN_TTL_DAYS: life of an API token */
    long password_reset_ttl_s;  /* PASSWORD_RESET_TTL_S: life of a reset link */
    long email_verify_ttl_s;    /* EMAIL_VERIFY_TTL_S: life of a verification link */
    char *totp_issuer;          /* TOTP_ISSUER: name shown by authenticator apps (owned) */
    char *totp_secret_key;      /* TOTP_SECRET_KEY: as given (owned; secret) */
    unsigned char totp_key[32]; /* parsed from totp_secret_key (secret) */
    bool totp_key_set;          /* totp_key holds a key */
    char *smtp_url;             /* SMTP_URL: smtp[s]://[user:pass@]host:port, "" = .eml files (owned) */
    char *smtp_starttls;        /* SMTP_STARTTLS: auto, require, try or off (owned) */
    char *mail_dir;             /* MAIL_DIR: folder of .eml files (owned) */
    char *mail_from;            /* MAIL_FROM: From header and envelope sender (owned) */
    long mail_poll_s;           /* MAIL_POLL_S: outbox poll besides LISTEN */
    long mail_batch;            /* MAIL_BATCH: emails in flight per server */
    long mail_lease_s;          /* MAIL_LEASE_S: claim lease of one send */
    long mail_smtp_timeout_s;   /* MAIL_SMTP_TIMEOUT_S: longest SMTP attempt */
    long mail_retry_base_s;     /* MAIL_RETRY_BASE_S: first retry delay, doubled per attempt */
    long mail_max_attempts;     /* MAIL_MAX_ATTEMPTS: attempts before giving up */
    /* Study workflow (domain/workflow.c). */
    char *graphviz_dot;         /* GRAPHVIZ_DOT: Graphviz's dot program for the workflow SVG (owned) */
    /* Object storage and video (io/storage.c, domain/videos.c,
     * tasks/video_zip.c, tasks/reconcile_videos.c). */
    char *storage_url;          /* STORAGE_URL: file://DIR, s3://BUCKET or gs://BUCKET (owned) */
    char *s3_endpoint;          /* S3_ENDPOINT: scheme://host[:port] of the S3 API, "" = AWS/GCS (owned) */
    char *s3_region;            /* S3_REGION: "" = us-east-1 (auto for gs) (owned) */
    char *s3_access_key_id;     /* S3_ACCESS_KEY_ID (owned) */
    char *s3_secret_access_key; /* S3_SECRET_ACCESS_KEY (owned; secret) */
    bool s3_path_style;         /* S3_PATH_STYLE: endpoint/bucket/key URLs */
    bool storage_fsync;         /* STORAGE_FSYNC: file:// objects fsynced before rename */
    char *static_dir;           /* STATIC_DIR: the web pages (http/static.c) (owned) */
    char *storage_link_secret;  /* STORAGE_LINK_SECRET: HMAC key of file:// links, "" = random per process (owned; secret) */
    char *pipe_webhook_key;     /* PIPE_WEBHOOK_KEY: Pipe's webhook key, "" = webhook refused (owned; secret) */
    char *aws_lambda_secret_access_key; /* AWS_LAMBDA_SECRET_ACCESS_KEY: key of POST /api/v1/video/, "" = refused (owned; secret) */
    long video_zip_part_mb;     /* VIDEO_ZIP_PART_MB: multipart part size of video zips */
    long stale_upload_age_s;    /* STALE_UPLOAD_AGE_S: age of incomplete uploads the nightly job aborts */
    /* The experiment builder and its sweeps (tasks/build.c, tasks/cleanup.c). */
    char *build_root;           /* BUILD_ROOT: checkouts/ and builds/ live here (owned) */
    char *build_runner;         /* BUILD_RUNNER: local or docker (owned) */
    char *runner_repo_url;      /* RUNNER_REPO_URL: default runner repository (owned) */
    char *runner_repo_allow;    /* RUNNER_REPO_ALLOW: comma-separated URL prefixes a study's repository may have (owned) */
    char *github_api_url;       /* GITHUB_API_URL: origin of the GitHub REST API (owned) */
    char *github_token;         /* GITHUB_TOKEN: "" = anonymous (owned; secret) */
    long build_timeout_s;       /* BUILD_TIMEOUT_S: longest runner build (whole process group killed) */
    char *build_sandbox;        /* BUILD_SANDBOX: bwrap or none (owned) */
    char *bwrap_bin;            /* BWRAP_BIN: the bubblewrap program (owned) */
    bool build_network;         /* BUILD_NETWORK: builds may use the network */
    long build_uid;             /* BUILD_UID: host uid and gid of builds when the server is root */
    long build_memory_mb;       /* BUILD_MEMORY_MB: RLIMIT_DATA of build processes */
    long build_max_procs;       /* BUILD_MAX_PROCS: RLIMIT_NPROC of builds */
    long build_max_output_mb;   /* BUILD_MAX_OUTPUT_MB: RLIMIT_FSIZE, /tmp size, output total */
    char *build_ro_paths;       /* BUILD_RO_PATHS: extra read-only binds, comma-separated (owned) */
    long build_fetch_timeout_s; /* BUILD_FETCH_TIMEOUT_S: longest attempt of a GitHub call or archive download */
    char *docker_bin;           /* DOCKER_BIN: the docker client (owned) */
    char *builder_image;        /* BUILDER_IMAGE: tag of the builder image (owned) */
    char *builder_context;      /* BUILDER_CONTEXT: docker build context, "" = the checkout (owned) */
    char *build_env;            /* BUILD_ENV: extra KEY=VALUE,... given to builds (owned; may hold secrets) */
    long max_archive_bytes;     /* MAX_ARCHIVE_BYTES: largest runner archive, packed or unpacked */
    long max_archive_files;     /* MAX_ARCHIVE_FILES: most entries in a runner archive */
    long build_upload_concurrency; /* BUILD_UPLOAD_CONCURRENCY: uploads/copies at once per build */
    /* Messages and notifications (tasks/announce.c). */
    long notify_window_s;       /* NOTIFY_WINDOW_S: edit notifications of a study gathered per window */
    /* The support page (domain/sitepages.c). */
    char *support_email;        /* SUPPORT_EMAIL: where support messages go (owned) */
    long support_rate_max;      /* SUPPORT_RATE_MAX: support messages per address/email per window */
};

/* Reads every variable through getenv_fn (getenv in production, a table in
 * tests).  On a bad value returns -1 and writes a message naming the
 * variable into err; cfg is then left cleaned up. */
typedef const char *(*config_getenv_fn)(const char *name, void *arg);
int config_load(struct config *cfg, config_getenv_fn getenv_fn, void *arg,
                char *err, size_t errlen);
void config_cleanup(struct config *cfg);

/* True when the numeric address ip falls in one of list[0..count). */
bool config_addr_in(const struct config_cidr *list, int count, const char *ip);

/* Writes the table (name, default, meaning) for --help. */
void config_print_help(FILE *out);
/* Writes the table as Markdown rows, for the README. */
void config_print_markdown(FILE *out);

#endif
