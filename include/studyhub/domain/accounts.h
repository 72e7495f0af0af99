/* accounts: the self-service account flows, as JSON endpoints (pages come
 * later).  Bodies are JSON objects (plain, or JSON:API with the fields in
 * data.attributes); errors are JSON:API error objects whose pointer names
 * the field ("/email"); bad input changes nothing.
 *
 * Anyone (no credentials; JSON-only bodies are the CSRF defence):
 *   POST accounts/signup/                {email, password, given_name?,
 *        family_name?, nickname?}  201 (no session: the address must be
 *        verified first; an email with a single-use link is queued).  A
 *        taken email gets the same 201 and document (a random id; the
 *        password is still hashed), and its owner an email saying someone
 *        tried: the answer never tells whether an address has an account.
 *   POST accounts/verify/                {token}  200: address verified
 *   POST accounts/verify/resend/         {email}  202 whatever the email
 *   POST accounts/password-reset/        {email}  202 whatever the email
 *   POST accounts/password-reset/confirm/ {token, password}  204: password
 *        set, address verified, every session and API token of the user
 *        ended
 * A logged-in caller (session or token):
 *   GET  accounts/me/                    email, verification, two-factor
 *   GET  accounts/totp/                  two-factor status
 *   GET  accounts/researcher-access/     200, or the 403 two_factor_required
 *        every researcher endpoint gives (ROUTE_RESEARCHER)
 *   GET  accounts/tokens/                the caller's API tokens
 *   DELETE accounts/tokens/{id}/         revoke one (404 if not theirs)
 * A session only (a token cannot manage credentials: 403 session_required):
 *   POST accounts/totp/                  enrol: secret + otpauth:// URI (201)
 *   POST accounts/totp/confirm/          {code}: TOTP on; 10 recovery codes,
 *        shown once; this session counts as two-factor verified, the
 *        user's other sessions end
 *   POST accounts/totp/disable/          {code | recovery_code}  204; the
 *        user's API tokens are revoked
 *   POST accounts/totp/recovery-codes/   {code}: 10 new codes, old ones void
 *   POST accounts/tokens/                {name?}: the key, shown once (201),
 *        expiring after TOKEN_TTL_DAYS, two-factor verified when the
 *        session is.  Researchers and site admins need a verified session.
 * Every code checked above counts against the user's one two-factor
 * lockout (auth_second_factor_check; 429 too_many_attempts).
 * All under /api/v1/.  Emailed links point at BASE_URL (never the Host
 * header, which a caller controls) or http://LISTEN_ADDR:PORT: set
 * BASE_URL in production.  Links: <base>/accounts/verify/<token>/ and
 * <base>/accounts/password-reset/<token>/, for the pages to POST back.
 * Sign-up, resend and reset requests count against MAIL_RATE_* (per
 * account and address, per LOGIN_RATE_WINDOW_S), and 429 when past them. */
#ifndef STUDYHUB_DOMAIN_ACCOUNTS_H
#define STUDYHUB_DOMAIN_ACCOUNTS_H

struct router;

/* Adds the module's route table (each route with its access policy);
 * 0, or -1 when the router refused one. */
int accounts_routes(struct router *r);

/* Scheduled job cleanup_account_tokens: deletes emailed tokens a week
 * after they expired or were used. */
struct sched_job;
extern const struct sched_job accounts_cleanup_job;

#endif
