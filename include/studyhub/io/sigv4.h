/* sigv4: AWS Signature Version 4 for S3 and S3-compatible services (GCS XML
 * API with HMAC keys): canonical request, string to sign, signing key,
 * Authorization header and presigned URLs.  Pure functions: the time is
 * passed in, nothing touches the network or the clock. */
#ifndef STUDYHUB_IO_SIGV4_H
#define STUDYHUB_IO_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* SHA-256 of the empty string, the payload hash of a request without body. */
#define SIGV4_EMPTY_SHA256 \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Payload hash for streamed bodies and presigned URLs. */
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

/* Who signs, and for which scope.  All borrowed. */
struct sigv4_creds {
    const char *access_key; /* e.g. AKIAIOSFODNN7EXAMPLE */
    const char *secret_key;
    const char *region;     /* e.g. us-east-1; "auto" for GCS */
    const char *service;    /* "s3" */
};

/* A name/value pair, raw (not encoded).  Borrowed. */
struct sigv4_pair {
    const char *name;
    const char *value; /* NULL is the same as "" */
};

/* One request to sign.  Everything borrowed. */
struct sigv4_request {
    const char *method;              /* "GET", "PUT", ... */
    const char *path;                /* raw path starting with '/', e.g.
                                        "/bucket/a b.txt"; encoded here one
                                        segment at a time ('/' kept) */
    const struct sigv4_pair *query;  /* raw query parameters; encoded and
                                        sorted here; value NULL or "" for
                                        a bare name such as ?uploads */
    size_t nquery;
    const struct sigv4_pair *headers;/* every header to sign, at least host
                                        and x-amz-date; names in any case,
                                        values trimmed here */
    size_t nheaders;
    const char *payload_hash;        /* hex SHA-256 of the body, or
                                        SIGV4_UNSIGNED_PAYLOAD */
};

/* HMAC-SHA256(key, data) into out. */
void sigv4_hmac_sha256(const void *key, size_t keylen, const void *data,
                       size_t len, uint8_t out[32]);

/* "20130524T000000Z" (UTC) into out (17 bytes with the NUL). */
void sigv4_amz_date(time_t t, char out[17]);

/* S3's URI encoding: A-Z a-z 0-9 - . _ ~ kept, every other byte %XX (upper
 * case hex); '/' kept when keep_slash.  Returns a malloc'd string, or NULL
 * when out of memory. */
char *sigv4_uri_encode(const char *s, size_t len, bool keep_slash);

/* The canonical query string of q (names and values encoded, sorted):
 * what goes after '?' in a URL so that it is signed as sent.  malloc'd. */
char *sigv4_canonical_query(const struct sigv4_pair *q, size_t n);

/* The canonical request, the string to sign, and the signing key, exposed
 * for tests and for debugging a SignatureDoesNotMatch.  Strings are
 * malloc'd (NULL when out of memory). */
char *sigv4_canonical_request(const struct sigv4_request *r);
char *sigv4_string_to_sign(const struct sigv4_creds *c, time_t now,
                           const char *canonical_request);
void sigv4_signing_key(const char *secret, const char *date8,
                       const char *region, const char *service,
                       uint8_t out[32]);

/* The value of the Authorization header for r signed at `now` (which must
 * be the time in r's x-amz-date header).  If signature is not NULL the
 * 64-hex signature is copied there too.  malloc'd; NULL when out of memory
 * or when an argument is missing. */
char *sigv4_authorization(const struct sigv4_creds *c,
                          const struct sigv4_request *r, time_t now,
                          char signature[65]);

/* A presigned URL: origin (e.g. "https://examplebucket.s3.amazonaws.com",
 * no trailing slash) + the encoded path + the canonical query made of
 * `extra` (e.g. response-content-disposition) and the X-Amz-* parameters,
 * signed with host as the only signed header and UNSIGNED-PAYLOAD.  host
 * is the Host header the client will send (host[:port]).  expires is in
 * seconds (1..604800).  malloc'd; NULL on a bad argument or out of memory. */
char *sigv4_presign_url(const struct sigv4_creds *c, const char *method,
                        const char *origin, const char *host,
                        const char *path, const struct sigv4_pair *extra,
                        size_t nextra, time_t now, unsigned expires);

#endif
