"""test_accounts: accounts end to end, through a real SMTP sink on
loopback (smtp_sink.py): sign-up and email verification, login refusals,
password reset by emailed single-use token (it ends every session), TOTP
two-factor (enrolment, confirmation, replay refusal, recovery codes, the
two-step login, the researcher gate, turning it off), API token
management, CSRF on all of it, the per-account and per-address counters
of account emails (429 + Retry-After), the Secure cookie flag; and the mail outbox
sender: SMTP retries, permanent refusals, give-up after MAIL_MAX_ATTEMPTS,
two servers sharing one outbox, a SIGTERM mid-send (no duplicate), a
SIGKILL between the relay's 250 and the database update (the one
documented duplicate: same bytes, same Message-ID), and the .eml folder's
exactly-once file per row.

Every class has its own Redis, so the login counters of these tests never
touch those of other test files."""

import base64
import hashlib
import hmac
import os
import re
import secrets
import struct
import time

from apifixtures import World, lit
from harness import (JSONAPI, SLOW, RedisServer, StudyhubTestCase, new_dir,
                     request, wait_until)
from smtp_sink import SmtpSink

SIGNUP = "/api/v1/accounts/signup/"
LOGIN = "/api/v1/auth/login/"
LOGIN_2FA = "/api/v1/auth/login/2fa/"
LOGOUT = "/api/v1/auth/logout/"
ME = "/api/v1/accounts/me/"
TOTP = "/api/v1/accounts/totp/"
TOKENS = "/api/v1/accounts/tokens/"
GATE = "/api/v1/accounts/researcher-access/"
CSRF_DETAIL = "CSRF Failed: CSRF token missing or incorrect."
PASSWORD = "correct horse battery"
MAIL_WAIT = 15 * SLOW


def totp(secret, t=None, step_offset=0):
    """RFC 6238 code (HMAC-SHA1, 30 s, 6 digits) and its step."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    step = int(time.time() if t is None else t) // 30 + step_offset
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 15
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000
    return f"{code:06d}", step


def wrong_code(secret):
    """A code no step of the window has."""
    valid = {totp(secret, step_offset=k)[0] for k in (-2, -1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "123456", "999999") if c not in valid)


def unique_email(name):
    return f"{name}-{secrets.token_hex(4)}@example.test"


def csrf(client):
    return {"X-CSRFToken": client.cookies.get("csrftoken", "")}


class AccountCase(StudyhubTestCase):
    """Shared helpers: a class server with its own Redis and SMTP sink."""

    server_env = {}

    @classmethod
    def setUpClass(cls):
        cls.redis_srv = RedisServer().start()
        cls.addClassCleanup(cls.redis_srv.stop)
        cls.sink = SmtpSink().start()
        cls.addClassCleanup(cls.sink.stop)
        env = {"SMTP_URL": cls.sink.url, "MAIL_POLL_S": "1", "MAIL_RETRY_BASE_S": "1",
               "MAIL_FROM": "Studyhub Test <noreply@studyhub.test>"}
        env.update(cls.server_env)
        cls.srv = cls.class_server(env=env, redis_url=cls.redis_srv.url)
        cls.w = World(cls.srv)

    # -- helpers

    def assertError(self, r, status, code, pointer=None, detail=None):
        self.assertStatus(r, status)
        self.assertEqual(r.headers.get("content-type"), JSONAPI, r.body)
        err = r.json["errors"][0]
        self.assertEqual(err["status"], str(status))
        self.assertEqual(err["code"], code, r.body)
        if pointer is not None:
            self.assertEqual(err["source"]["pointer"], pointer)
        if detail is not None:
            self.assertEqual(err["detail"], detail)
        return err

    def mail_to(self, email, n=1, kind=None):
        """The n-th message to email (waiting for it), optionally checking
        its X-Studyhub-Kind."""
        msgs = self.sink.wait_for(n, MAIL_WAIT, to=email)
        m = msgs[n - 1]
        if kind:
            self.assertEqual(m.email["X-Studyhub-Kind"], kind)
        return m

    def link_token(self, msg, what):
        found = re.search(rf"/accounts/{what}/([0-9a-f]{{64}})/", msg.text)
        self.assertTrue(found, msg.text)
        return found.group(1)

    def signup(self, name, password=PASSWORD, **extra):
        email = unique_email(name)
        body = {"email": email, "password": password}
        body.update(extra)
        r = self.srv.post(SIGNUP, json_body=body)
        self.assertStatus(r, 201)
        return email, r

    def account(self, name, researcher=False):
        """A verified account (signed up and confirmed through the API)."""
        email, r = self.signup(name)
        token = self.link_token(self.mail_to(email, kind="verify_email"), "verify")
        self.assertStatus(self.srv.post("/api/v1/accounts/verify/",
                                        json_body={"token": token}), 200)
        if researcher:
            self.w.sql(f"UPDATE users SET is_researcher = true WHERE lower(email) = lower('{email}')")
        return {"email": email, "password": PASSWORD, "uuid": r.json["data"]["id"]}

    def login(self, client, acct, password=None, **kw):
        return client.post(LOGIN, json_body={"email": acct["email"],
                                             "password": password or acct["password"]}, **kw)

    def session(self, acct):
        c = self.srv.client()
        self.assertStatus(self.login(c, acct), 200)
        return c

    def users_count(self):
        return int(self.w.sql("SELECT count(*) FROM users"))


class SignupVerifyTest(AccountCase):

    def test_signup_verify_then_login(self):
        email, r = self.signup("sam", given_name="Sam", nickname="S")
        data = r.json["data"]
        self.assertEqual(data["type"], "users")
        self.assertEqual(data["attributes"]["email"], email)
        self.assertFalse(data["attributes"]["email_verified"])
        self.assertEqual(data["attributes"]["given_name"], "Sam")
        self.assertEqual(r.set_cookies, [])            # no session before verifying
        acct = {"email": email, "password": PASSWORD}

        # The emailed link, through SMTP: headers and a single-use token.
        msg = self.mail_to(email, kind="verify_email")
        self.assertEqual(msg.mail_from, "noreply@studyhub.test")
        self.assertEqual(msg.email["To"], email)
        self.assertEqual(msg.email["Subject"], "Confirm your email address")
        self.assertIn("Studyhub Test", msg.email["From"])
        self.assertRegex(msg.message_id, r"^<outbox\.\d+\.\d+@studyhub\.test>$")
        token = self.link_token(msg, "verify")
        self.assertIn(f"http://127.0.0.1:{self.srv.port}/accounts/verify/{token}/", msg.text)
        # Only its SHA-256 is stored.
        digest = hashlib.sha256(token.encode()).hexdigest()
        self.assertEqual(self.w.sql(f"SELECT count(*) FROM account_tokens WHERE token_hash = '{digest}'"), "1")

        # Unverified: the right password gets a clear 403; a wrong one
        # the usual 400 (nothing learnt without the password).
        c = self.srv.client()
        self.assertError(self.login(c, acct), 403, "email_not_verified", "/email")
        self.assertError(self.login(c, acct, password="wrong password!"), 400, "invalid",
                         detail="Unable to log in with provided credentials.")
        self.assertEqual(c.cookies, {})

        r = self.srv.post("/api/v1/accounts/verify/", json_body={"token": token})
        self.assertStatus(r, 200)
        self.assertTrue(r.json["data"]["attributes"]["email_verified"])
        # Single use.
        self.assertError(self.srv.post("/api/v1/accounts/verify/", json_body={"token": token}),
                         400, "invalid", "/token")
        # The outbox keeps no usable link once the email is sent.
        body = self.w.sql(f"SELECT body_text FROM mail_outbox WHERE to_addr = '{email}'")
        self.assertNotIn(token, body)
        self.assertTrue(body.startswith("(removed once sent"), body)

        r = self.login(c, acct)
        self.assertStatus(r, 200)
        self.assertIn("sessionid", c.cookies)
        me = c.get(ME)
        self.assertStatus(me, 200)
        a = me.json["data"]["attributes"]
        self.assertEqual(a["email"], email)
        self.assertTrue(a["email_verified"])
        self.assertFalse(a["two_factor_enabled"])
        self.assertEqual(a["authenticated_by"], "session")

    def test_signup_bad_input_changes_nothing(self):
        before = self.users_count()
        p = self.srv.post
        cases = [
            ({"password": PASSWORD}, "required", "/email"),
            ({"email": unique_email("a")}, "required", "/password"),
            ({"email": "not-an-email", "password": PASSWORD}, "invalid", "/email"),
            ({"email": "a b@example.test", "password": PASSWORD}, "invalid", "/email"),
            ({"email": 12, "password": PASSWORD}, "invalid", "/email"),
            ({"email": unique_email("a"), "password": "short"}, "invalid", "/password"),
            ({"email": "same-as-pw@example.test", "password": "Same-As-PW@example.test"},
             "invalid", "/password"),
            ({"email": unique_email("a"), "password": PASSWORD, "given_name": 5},
             "invalid", "/given_name"),
            ({"email": unique_email("a"), "password": PASSWORD, "nickname": "x" * 300},
             "invalid", "/nickname"),
        ]
        for body, code, pointer in cases:
            with self.subTest(body=body):
                self.assertError(p(SIGNUP, json_body=body), 400, code, pointer)
        self.assertError(p(SIGNUP, body="{", headers={"Content-Type": "application/json"}),
                         400, "parse_error")
        self.assertError(p(SIGNUP, body="email=a&password=b",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}),
                         415, "unsupported_media_type")
        # JSON:API documents are accepted too.
        r = p(SIGNUP, json_body={"data": {"type": "users", "attributes": {
            "email": unique_email("jsonapi"), "password": PASSWORD}}}, jsonapi=True)
        self.assertStatus(r, 201)
        self.assertEqual(self.users_count(), before + 1)

    def test_verify_bad_tokens(self):
        email, _ = self.signup("exp")
        token = self.link_token(self.mail_to(email), "verify")
        for bad in ("", "abc", "g" * 64, token.upper()):
            with self.subTest(token=bad):
                r = self.srv.post("/api/v1/accounts/verify/", json_body={"token": bad})
                self.assertStatus(r, 400)
        digest = hashlib.sha256(token.encode()).hexdigest()
        self.w.sql(f"UPDATE account_tokens SET expires_at = now() - interval '1 second'"
                   f" WHERE token_hash = '{digest}'")
        self.assertError(self.srv.post("/api/v1/accounts/verify/", json_body={"token": token}),
                         400, "invalid", "/token")
        self.assertEqual(self.w.sql(f"SELECT email_verified_at IS NULL FROM users"
                                    f" WHERE email = '{email}'"), "t")

    def test_cleanup_job_deletes_old_tokens(self):
        email, _ = self.signup("old")
        self.mail_to(email)
        self.w.sql("UPDATE account_tokens t SET expires_at = now() - interval '8 days'"
                   f" FROM users u WHERE u.id = t.user_id AND u.email = '{email}'")
        out = self.srv.ctl("run", "cleanup_account_tokens", timeout=20)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(self.w.sql("SELECT count(*) FROM account_tokens t JOIN users u"
                                    f" ON u.id = t.user_id WHERE u.email = '{email}'"), "0")

    def test_resend_answers_the_same_whoever_asks(self):
        email, _ = self.signup("resend")
        self.mail_to(email)
        verified = self.account("already")
        for addr in (email, verified["email"], unique_email("nobody")):
            with self.subTest(addr=addr):
                r = self.srv.post("/api/v1/accounts/verify/resend/", json_body={"email": addr})
                self.assertStatus(r, 202)
                self.assertEqual(r.json, {"meta": {"detail": "If that address belongs to an"
                                                             " account, an email is on its way."}})
        second = self.mail_to(email, n=2, kind="verify_email")
        token = self.link_token(second, "verify")
        self.assertStatus(self.srv.post("/api/v1/accounts/verify/", json_body={"token": token}), 200)
        time.sleep(1.0)
        self.assertEqual(len(self.sink.to(verified["email"])), 1)   # only its sign-up mail


class PasswordResetTest(AccountCase):

    def test_reset_through_smtp_ends_sessions(self):
        acct = self.account("rita")
        old = self.session(acct)
        self.assertStatus(old.get(ME), 200)
        other = self.session(acct)

        # Unknown and known addresses get the same answer.
        r1 = self.srv.post("/api/v1/accounts/password-reset/",
                           json_body={"email": unique_email("nobody")})
        r2 = self.srv.post("/api/v1/accounts/password-reset/",
                           json_body={"email": acct["email"].upper()})
        self.assertStatus(r1, 202)
        self.assertStatus(r2, 202)
        self.assertEqual(r1.body, r2.body)
        msg = self.mail_to(acct["email"], n=2, kind="password_reset")
        self.assertEqual(msg.email["Subject"], "Reset your password")
        token = self.link_token(msg, "password-reset")

        confirm = "/api/v1/accounts/password-reset/confirm/"
        # Bad input changes nothing: the token still works afterwards.
        self.assertError(self.srv.post(confirm, json_body={"token": token, "password": "short"}),
                         400, "invalid", "/password")
        self.assertError(self.srv.post(confirm, json_body={"token": token,
                                                           "password": acct["email"]}),
                         400, "invalid", "/password")
        self.assertError(self.srv.post(confirm, json_body={"token": "0" * 64,
                                                           "password": "a new password"}),
                         400, "invalid", "/token")
        self.assertStatus(old.get(ME), 200)

        r = self.srv.post(confirm, json_body={"token": token, "password": "a brand new password"})
        self.assertStatus(r, 204)
        # Every session ended; the old password is gone; the new one works.
        self.assertError(old.get(ME), 401, "not_authenticated")
        self.assertError(other.get(ME), 401, "not_authenticated")
        c = self.srv.client()
        self.assertStatus(self.login(c, acct), 400)
        self.assertStatus(self.login(c, acct, password="a brand new password"), 200)
        # Single use.
        self.assertError(self.srv.post(confirm, json_body={"token": token,
                                                           "password": "yet another one"}),
                         400, "invalid", "/token")
        notice = self.mail_to(acct["email"], n=3, kind="password_changed")
        self.assertIn("password was changed", notice.text)

    def test_expired_and_superseded_tokens(self):
        acct = self.account("eve")
        reset = "/api/v1/accounts/password-reset/"
        confirm = reset + "confirm/"
        self.assertStatus(self.srv.post(reset, json_body={"email": acct["email"]}), 202)
        t1 = self.link_token(self.mail_to(acct["email"], n=2), "password-reset")
        self.assertStatus(self.srv.post(reset, json_body={"email": acct["email"]}), 202)
        t2 = self.link_token(self.mail_to(acct["email"], n=3), "password-reset")
        d2 = hashlib.sha256(t2.encode()).hexdigest()
        self.w.sql(f"UPDATE account_tokens SET expires_at = now() - interval '1 second'"
                   f" WHERE token_hash = '{d2}'")
        self.assertError(self.srv.post(confirm, json_body={"token": t2, "password": "new password 2"}),
                         400, "invalid", "/token")
        # Using one link voids the user's other reset links.
        self.assertStatus(self.srv.post(confirm, json_body={"token": t1, "password": "new password 1"}),
                          204)
        digest = hashlib.sha256(t1.encode()).hexdigest()
        self.assertEqual(self.w.sql(
            "SELECT count(*) FROM account_tokens t JOIN users u ON u.id = t.user_id"
            f" WHERE u.email = '{acct['email']}' AND t.purpose = 'password_reset'"
            f" AND t.used_at IS NULL AND t.token_hash <> '{digest}'"), "0")

    def test_emails_use_base_url_not_host_header(self):
        acct = self.account("hoster")
        r = self.srv.post("/api/v1/accounts/password-reset/", json_body={"email": acct["email"]},
                          headers={"Host": "evil.example"})
        self.assertStatus(r, 202)
        msg = self.mail_to(acct["email"], n=2)
        self.assertNotIn("evil.example", msg.text)
        self.assertIn(f"http://127.0.0.1:{self.srv.port}/accounts/password-reset/", msg.text)


class TwoFactorTest(AccountCase):
    # The shared lockout of wrong codes has tests of its own
    # (test_account_security); here the flows need many wrong codes.
    server_env = {"TWO_FACTOR_MAX_FAILURES": "100"}

    def enroll(self, c):
        r = c.post(TOTP, headers=csrf(c))
        self.assertStatus(r, 201)
        return r.json["data"]["attributes"]["secret"]

    def test_totp_lifecycle_and_researcher_gate(self):
        acct = self.account("rhea", researcher=True)
        c = self.session(acct)
        # A researcher without two-factor: the gate and token creation say so.
        self.assertError(c.get(GATE), 403, "two_factor_required")
        self.assertError(c.post(TOKENS, headers=csrf(c)), 403, "two_factor_required")
        self.assertFalse(c.get(ME).json["data"]["attributes"]["two_factor_verified"])

        # Enrolment: CSRF applies; the secret and otpauth:// URI come back.
        self.assertError(c.post(TOTP), 403, "permission_denied", detail=CSRF_DETAIL)
        first = self.enroll(c)
        r = c.post(TOTP, headers=csrf(c))            # again: a fresh secret replaces it
        self.assertStatus(r, 201)
        a = r.json["data"]["attributes"]
        secret = a["secret"]
        self.assertNotEqual(secret, first)
        self.assertRegex(secret, r"^[A-Z2-7]{32}$")
        self.assertTrue(a["otpauth_uri"].startswith("otpauth://totp/studyhub:"), a)
        self.assertIn(f"secret={secret}", a["otpauth_uri"])
        self.assertIn("issuer=studyhub", a["otpauth_uri"])
        self.assertEqual((a["digits"], a["period"], a["algorithm"]), (6, 30, "SHA1"))
        self.assertTrue(c.get(TOTP).json["data"]["attributes"]["pending"])
        self.assertError(c.get(GATE), 403, "two_factor_required")   # pending is not on

        # Confirmation: a wrong code, the old secret's code, then the right one.
        confirm = TOTP + "confirm/"
        self.assertError(c.post(confirm, json_body={"code": wrong_code(secret)}, headers=csrf(c)),
                         400, "invalid", "/code")
        if totp(first)[0] != totp(secret)[0]:
            self.assertError(c.post(confirm, json_body={"code": totp(first)[0]}, headers=csrf(c)),
                             400, "invalid", "/code")
        code, step = totp(secret)
        r = c.post(confirm, json_body={"code": code}, headers=csrf(c))
        self.assertStatus(r, 200)
        codes = r.json["data"]["attributes"]["recovery_codes"]
        self.assertEqual(len(codes), 10)
        self.assertEqual(len(set(codes)), 10)
        for rc in codes:
            self.assertRegex(rc, r"^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$")
        # Stored hashed only.
        self.assertEqual(self.w.sql(
            "SELECT count(*) FROM user_recovery_codes r JOIN users u ON u.id = r.user_id"
            f" WHERE u.email = '{acct['email']}'"), "10")
        self.assertEqual(self.w.sql(
            f"SELECT count(*) FROM user_recovery_codes WHERE code_hash = '{codes[0]}'"), "0")
        # This session proved the code: it passes the gate now.
        self.assertStatus(c.get(GATE), 200)
        me = c.get(ME).json["data"]["attributes"]
        self.assertTrue(me["two_factor_enabled"] and me["two_factor_verified"])
        self.assertEqual(me["two_factor"]["recovery_codes_left"], 10)
        self.assertError(c.post(TOTP, headers=csrf(c)), 409, "conflict")
        notice = self.mail_to(acct["email"], n=2, kind="totp_enabled")
        self.assertIn("two-factor authentication was turned on", notice.text)
        # A verified researcher session may make tokens.
        self.assertStatus(c.post(TOKENS, json_body={"name": "cli"}, headers=csrf(c)), 201)

        # Login is now two steps: no session until the code.
        c2 = self.srv.client()
        r = self.login(c2, acct)
        self.assertStatus(r, 202)
        meta = r.json["meta"]
        self.assertTrue(meta["second_factor_required"])
        self.assertEqual(meta["methods"], ["totp", "recovery_code"])
        self.assertNotIn("sessionid", c2.cookies)
        challenge = meta["challenge"]
        # The code used to confirm is spent (replay), whatever the clock says.
        self.assertError(c2.post(LOGIN_2FA, json_body={"challenge": challenge, "code": code}),
                         400, "invalid", "/code")
        next_code, _ = totp(secret, t=(step + 1) * 30)
        r = c2.post(LOGIN_2FA, json_body={"challenge": challenge, "code": next_code})
        self.assertStatus(r, 200)
        self.assertTrue(r.json["data"]["attributes"]["two_factor_verified"])
        self.assertIn("HttpOnly", [x for x in r.set_cookies if x.startswith("sessionid=")][0])
        self.assertStatus(c2.get(GATE), 200)
        # The challenge is gone once used.
        self.assertError(c2.post(LOGIN_2FA, json_body={"challenge": challenge, "code": next_code}),
                         400, "invalid_challenge", "/challenge")

        # Recovery codes: single use, any case, dashes optional.
        c3 = self.srv.client()
        ch = self.login(c3, acct).json["meta"]["challenge"]
        self.assertStatus(c3.post(LOGIN_2FA, json_body={"challenge": ch, "recovery_code": codes[0]}), 200)
        ch = self.login(c3, acct).json["meta"]["challenge"]
        self.assertError(c3.post(LOGIN_2FA, json_body={"challenge": ch, "recovery_code": codes[0]}),
                         400, "invalid", "/recovery_code")
        self.assertStatus(c3.post(LOGIN_2FA, json_body={
            "challenge": ch, "recovery_code": codes[1].upper().replace("-", " ")}), 200)
        self.assertEqual(c3.get(TOTP).json["data"]["attributes"]["recovery_codes_left"], 8)

        # A challenge takes five codes, then the password is needed again.
        c4 = self.srv.client()
        ch = self.login(c4, acct).json["meta"]["challenge"]
        for _ in range(5):
            self.assertError(c4.post(LOGIN_2FA, json_body={"challenge": ch,
                                                           "code": wrong_code(secret)}),
                             400, "invalid", "/code")
        self.assertError(c4.post(LOGIN_2FA, json_body={"challenge": ch, "code": next_code}),
                         400, "invalid_challenge")
        self.assertError(c4.post(LOGIN_2FA, json_body={"challenge": "f" * 64, "code": "123456"}),
                         400, "invalid_challenge")
        self.assertError(c4.post(LOGIN_2FA, json_body={"challenge": "nope", "code": "123456"}),
                         400, "invalid_challenge")
        self.assertError(c4.post(LOGIN_2FA, json_body={"challenge": "f" * 64}), 400, "required",
                         "/code")

        # New recovery codes need a code; the old ones stop working.
        regen = TOTP + "recovery-codes/"
        self.assertError(c3.post(regen, json_body={"code": wrong_code(secret)}, headers=csrf(c3)),
                         400, "invalid", "/code")
        self.w.sql("UPDATE user_totp t SET last_step = 0 FROM users u"
                   f" WHERE u.id = t.user_id AND u.email = '{acct['email']}'")  # forget spent steps
        r = c3.post(regen, json_body={"code": totp(secret)[0]}, headers=csrf(c3))
        self.assertStatus(r, 200)
        new_codes = r.json["data"]["attributes"]["recovery_codes"]
        self.assertEqual(len(set(new_codes) & set(codes)), 0)

        # Turning it off: a code or a recovery code; a token cannot.
        disable = TOTP + "disable/"
        self.assertError(c3.post(disable, json_body={"recovery_code": codes[2]}, headers=csrf(c3)),
                         400, "invalid", "/recovery_code")   # voided by the regeneration
        self.assertStatus(c3.post(disable, json_body={"recovery_code": new_codes[0]},
                                  headers=csrf(c3)), 204)
        self.mail_to(acct["email"], n=3, kind="totp_disabled")
        self.assertError(c3.post(disable, json_body={"code": "123456"}, headers=csrf(c3)),
                         409, "conflict")
        # Off: login is one step again, and the gate closes for researchers.
        c5 = self.srv.client()
        r = self.login(c5, acct)
        self.assertStatus(r, 200)
        self.assertFalse(r.json["data"]["attributes"]["two_factor_verified"])
        self.assertError(c5.get(GATE), 403, "two_factor_required")
        self.assertError(c2.get(GATE), 403, "two_factor_required")   # its 2FA is moot now

    def test_tokens_count_as_verified_but_cannot_manage_credentials(self):
        res = self.w.user("tokres", researcher=True)
        r = self.w.api(res, "GET", GATE)
        self.assertStatus(r, 200)
        self.assertTrue(self.w.api(res, "GET", ME).json["data"]["attributes"]["two_factor_verified"])
        for path in (TOTP, TOTP + "confirm/", TOTP + "disable/", TOKENS):
            with self.subTest(path=path):
                r = self.w.api(res, "POST", path, body={"code": "123456"})
                self.assertError(r, 403, "session_required")
        self.assertError(request(self.srv.port, "GET", GATE), 401, "not_authenticated")


class TokensTest(AccountCase):

    def test_create_list_use_revoke(self):
        acct = self.account("tina")
        c = self.session(acct)
        self.assertError(c.post(TOKENS, json_body={"name": "laptop"}), 403, "permission_denied",
                         detail=CSRF_DETAIL)
        r = c.post(TOKENS, json_body={"name": "laptop"}, headers=csrf(c))
        self.assertStatus(r, 201)
        tok = r.json["data"]
        key = tok["attributes"]["key"]
        self.assertRegex(key, r"^[0-9a-f]{40}$")
        self.assertEqual(tok["type"], "api-tokens")
        self.assertEqual(tok["attributes"]["name"], "laptop")
        self.assertIsNone(tok["attributes"]["last_used"])
        r2 = c.post(TOKENS, headers=csrf(c))                    # no body: unnamed
        self.assertStatus(r2, 201)
        self.assertError(c.post(TOKENS, json_body={"name": "x" * 101}, headers=csrf(c)),
                         400, "invalid", "/name")
        # Only the hash is stored.
        self.assertEqual(self.w.sql(f"SELECT count(*) FROM api_tokens WHERE token_hash ="
                                    f" '{hashlib.sha256(key.encode()).hexdigest()}'"), "1")
        # The key works; listing never shows keys.
        r = request(self.srv.port, "GET", ME, token="Token " + key)
        self.assertStatus(r, 200)
        self.assertEqual(r.json["data"]["attributes"]["authenticated_by"], "token")
        lst = c.get(TOKENS)
        self.assertStatus(lst, 200)
        self.assertEqual([t["id"] for t in lst.json["data"]], [tok["id"], r2.json["data"]["id"]])
        self.assertTrue(all("key" not in t["attributes"] for t in lst.json["data"]))
        wait_until(lambda: c.get(TOKENS).json["data"][0]["attributes"]["last_used"], 5,
                   message="last_used recorded")
        # Someone else's token, or a malformed id, is 404.
        other = self.w.user("other")
        self.assertError(self.w.api(other, "DELETE", f"{TOKENS}{tok['id']}/"), 404, "not_found")
        self.assertError(c.delete(f"{TOKENS}not-a-uuid/", headers=csrf(c)), 404, "not_found")
        self.assertError(c.delete(f"{TOKENS}{tok['id']}/"), 403, "permission_denied")
        self.assertStatus(c.delete(f"{TOKENS}{tok['id']}/", headers=csrf(c)), 204)
        self.assertError(request(self.srv.port, "GET", ME, token="Token " + key), 401,
                         "authentication_failed")
        # A token may revoke itself.
        key2 = r2.json["data"]["attributes"]["key"]
        r = request(self.srv.port, "DELETE", f"{TOKENS}{r2.json['data']['id']}/",
                    token="Token " + key2)
        self.assertStatus(r, 204)
        self.assertEqual(c.get(TOKENS).json["data"], [])

    def test_cookie_flags(self):
        acct = self.account("cookie")
        c = self.srv.client()
        r = self.login(c, acct)
        sid = [x for x in r.set_cookies if x.startswith("sessionid=")][0]
        self.assertIn("HttpOnly", sid)
        self.assertIn("SameSite=Lax", sid)
        self.assertNotIn("Secure", sid)
        # Behind a TLS-terminating proxy (COOKIE_SECURE=auto).
        r = self.login(c, acct, headers={"X-Forwarded-Proto": "https"})
        self.assertStatus(r, 200)
        for x in r.set_cookies:
            self.assertIn("; Secure", x)


class MailRateLimitTest(StudyhubTestCase):
    """Requests that send account emails, per account and per address
    (the login slow-down is in test_account_security)."""

    def test_reset_requests_per_account_and_address(self):
        redis = self.redis()
        env = {"MAIL_RATE_ACCOUNT_MAX": "2", "MAIL_RATE_ADDR_MAX": "4",
               "LOGIN_RATE_WINDOW_S": "4", "MAIL_DIR": new_dir("mail")}
        srv = self.server(env=env, redis_url=redis.url)
        reset = "/api/v1/accounts/password-reset/"
        a = unique_email("a")
        for _ in range(2):
            self.assertStatus(srv.post(reset, json_body={"email": a}), 202)
        r = srv.post(reset, json_body={"email": a.upper()})
        self.assertStatus(r, 429)
        self.assertEqual(r.json["errors"][0]["code"], "too_many_attempts")
        self.assertTrue(1 <= int(r.headers["retry-after"]) <= 4)
        self.assertStatus(srv.post(reset, json_body={"email": unique_email("b")}), 202)
        # Four counted on this address (the refused one too): the fifth waits.
        self.assertStatus(srv.post(reset, json_body={"email": unique_email("c")}), 429)


class MailOutboxTest(StudyhubTestCase):
    """The sender itself, fed by plain INSERTs as other modules do."""

    def insert(self, w, to, subject="Hello", body="Body text.\n", kind="test_mail", **sql):
        """One outbox row; sql: more columns as SQL expressions."""
        cols = ["kind", "to_addr", "subject", "body_text"] + list(sql)
        vals = [lit(kind), lit(to), lit(subject), lit(body)] + list(sql.values())
        return int(w.sql(f"INSERT INTO mail_outbox ({', '.join(cols)})"
                         f" VALUES ({', '.join(vals)}) RETURNING id"))

    def row(self, w, mid):
        out = w.sql("SELECT sent_at IS NOT NULL, failed_at IS NOT NULL, attempts,"
                    f" coalesce(last_error, ''), coalesce(message_id, '') FROM mail_outbox WHERE id = {mid}")
        sent, failed, attempts, err, msgid = out.split("|")
        return {"sent": sent == "t", "failed": failed == "t", "attempts": int(attempts),
                "error": err, "message_id": msgid}

    def wait_row(self, w, mid, key, timeout=MAIL_WAIT):
        return wait_until(lambda: self.row(w, mid)[key] and self.row(w, mid), timeout,
                          message=f"mail {mid} {key}")

    def smtp_server(self, sink, database=None, **env):
        e = {"SMTP_URL": sink.url, "MAIL_POLL_S": "1", "MAIL_RETRY_BASE_S": "1"}
        e.update(env)
        return self.server(database=database, env=e)

    def sink(self):
        s = SmtpSink().start()
        self.addCleanup(s.stop)
        return s

    def test_eml_files_exactly_once(self):
        d = new_dir("mail")
        srv = self.server(env={"MAIL_DIR": d, "MAIL_POLL_S": "1"})
        w = World(srv)
        # A file left by a delivery whose database update was lost: the row
        # is marked sent and the file is not written again.
        with open(os.path.join(d, "1000.eml"), "wb") as f:
            f.write(b"ALREADY")
        w.sql("INSERT INTO mail_outbox (id, kind, to_addr, subject, body_text)"
              " VALUES (1000, 'test_mail', 'x@example.test', 'S', 'B')")
        body = "Caf\u00e9 na\u00efve \u2713\n.leading dot\r\nCRLF line\n" + "y" * 1200 + "\n"
        m1 = self.insert(w, "u1@example.test", subject="Grüße \u2713 " + "long " * 20, body=body)
        m2 = self.insert(w, "u2@example.test", subject="Hi\r\nBcc: evil@example.test")
        bad = self.insert(w, "not an address")
        for mid in (1000, m1, m2):
            self.wait_row(w, mid, "sent")
        self.assertTrue(self.wait_row(w, bad, "failed")["error"].startswith("invalid recipient"))
        with open(os.path.join(d, "1000.eml"), "rb") as f:
            self.assertEqual(f.read(), b"ALREADY")
        self.assertEqual(sorted(os.listdir(d)), sorted(f"{i}.eml" for i in (1000, m1, m2)))

        import email
        import email.policy
        with open(os.path.join(d, f"{m1}.eml"), "rb") as f:
            raw = f.read()
        self.assertNotIn(b"\n", raw.replace(b"\r\n", b""))     # CRLF throughout
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(msg["To"], "u1@example.test")
        self.assertEqual(msg["Subject"], "Grüße \u2713 " + "long " * 20)
        self.assertEqual(msg["X-Studyhub-Kind"], "test_mail")
        self.assertEqual(msg.get_content().replace("\r\n", "\n"), body.replace("\r\n", "\n"))
        row = self.row(w, m1)
        self.assertEqual(msg["Message-ID"], row["message_id"])
        self.assertRegex(row["message_id"], rf"^<outbox\.{m1}\.\d+@studyhub\.invalid>$")
        with open(os.path.join(d, f"{m2}.eml"), "rb") as f:
            msg2 = email.message_from_bytes(f.read(), policy=email.policy.default)
        self.assertIsNone(msg2["Bcc"])
        self.assertEqual(msg2["Subject"], "Hi  Bcc: evil@example.test")

    def test_lease_of_another_server_is_respected(self):
        d = new_dir("mail")
        srv = self.server(env={"MAIL_DIR": d, "MAIL_POLL_S": "1"})
        w = World(srv)
        mid = self.insert(w, "l@example.test", lease_owner="'dead/1/x'",
                          lease_until="now() + interval '4 seconds'", attempts="1")
        time.sleep(1.5)
        self.assertFalse(self.row(w, mid)["sent"])
        self.assertFalse(os.path.exists(os.path.join(d, f"{mid}.eml")))
        row = self.wait_row(w, mid, "sent")
        self.assertEqual(row["attempts"], 2)

    def test_smtp_retry_permanent_refusal_and_give_up(self):
        sink = self.sink()
        sink.fail_data(451, 1)
        sink.reject_rcpt("gone@example.test", 550)
        srv = self.smtp_server(sink, MAIL_MAX_ATTEMPTS="3")
        w = World(srv)
        ok = self.insert(w, "ok@example.test", body="Line one\n.dot line\n..two dots\n")
        gone = self.insert(w, "gone@example.test")
        row = self.wait_row(w, ok, "sent")
        self.assertEqual(row["attempts"], 2)                    # 451, then accepted
        row = self.wait_row(w, gone, "failed")
        self.assertEqual(row["attempts"], 1)                    # 550: not retried
        self.assertIn("550", row["error"])
        # Always refused (4xx): given up after MAIL_MAX_ATTEMPTS.
        sink.fail_data(451, 10)
        flaky = self.insert(w, "flaky@example.test")
        row = self.wait_row(w, flaky, "failed", timeout=30 * SLOW)
        self.assertEqual(row["attempts"], 3)
        self.assertIn("451", row["error"])
        time.sleep(1.0)
        [m] = sink.to("ok@example.test")
        self.assertEqual(m.email["Content-Transfer-Encoding"], "7bit")
        self.assertEqual(m.text.replace("\r\n", "\n"), "Line one\n.dot line\n..two dots\n")
        self.assertEqual(sink.to("gone@example.test") + sink.to("flaky@example.test"), [])

    def test_two_servers_share_one_outbox(self):
        sink = self.sink()
        a = self.smtp_server(sink)
        self.smtp_server(sink, database=a.database)
        w = World(a)
        w.sql("INSERT INTO mail_outbox (kind, to_addr, subject, body_text)"
              " SELECT 'bulk', 'u' || i || '@example.test', 'S' || i, 'B'"
              " FROM generate_series(1, 40) i")
        msgs = sink.wait_for(40, 30 * SLOW)
        wait_until(lambda: w.sql("SELECT count(*) FROM mail_outbox WHERE sent_at IS NOT NULL") == "40",
                   MAIL_WAIT, message="40 rows sent")
        time.sleep(1.5)
        self.assertEqual(len(sink.messages), 40)
        self.assertEqual(len({m.message_id for m in msgs}), 40)
        self.assertEqual(sorted(m.rcpt[0] for m in sink.messages),
                         sorted(f"u{i}@example.test" for i in range(1, 41)))

    def test_sigterm_mid_send_waits_and_does_not_resend(self):
        sink = self.sink()
        sink.reply_delay = 2.0
        srv = self.smtp_server(sink)
        w = World(srv)
        mid = self.insert(w, "term@example.test")
        sink.wait_for(1, MAIL_WAIT)                # stored; the 250 is still coming
        self.assertFalse(self.row(w, mid)["sent"])
        srv.stop()                                 # SIGTERM: drains, exits 0
        self.assertTrue(self.row(w, mid)["sent"])
        sink.reply_delay = 0
        srv2 = self.smtp_server(sink, database=srv.database)
        self.assertTrue(srv2.running())
        time.sleep(2.0)
        self.assertEqual(len(sink.messages), 1)

    def test_kill_between_accept_and_record_resends_the_same_message(self):
        """The documented window: the relay said 250, the server died
        before sent_at.  The lease runs out, the email goes again, as the
        very same message (bytes and Message-ID)."""
        sink = self.sink()
        sink.reply_delay = 3.0
        srv = self.smtp_server(sink)
        w = World(srv)
        mid = self.insert(w, "crash@example.test")
        sink.wait_for(1, MAIL_WAIT)
        srv.kill()
        srv.check(expect_code=None)
        srv.proc = None                             # killed on purpose: no exit check
        row = w.sql(f"SELECT sent_at IS NULL, lease_owner IS NOT NULL FROM mail_outbox WHERE id = {mid}")
        self.assertEqual(row, "t|t")
        # Its lease would run out after MAIL_LEASE_S; make that now.
        w.sql(f"UPDATE mail_outbox SET lease_until = now() - interval '1 second' WHERE id = {mid}")
        sink.reply_delay = 0
        self.smtp_server(sink, database=srv.database)
        first, second = sink.wait_for(2, MAIL_WAIT)
        self.assertEqual(first.data, second.data)
        self.assertEqual(first.message_id, second.message_id)
        row = self.wait_row(w, mid, "sent")
        self.assertEqual(row["attempts"], 2)
        self.assertEqual(row["message_id"], first.message_id)

    def test_bad_mail_settings_refuse_to_start(self):
        from harness import run_server_once, database_url
        db = self.database()
        for env, needle in (({"MAIL_FROM": "nobody"}, "MAIL_FROM"),
                            ({"SMTP_URL": "http://x"}, "SMTP_URL"),
                            ({"MAIL_LEASE_S": "20", "MAIL_SMTP_TIMEOUT_S": "15"}, "MAIL_LEASE_S"),
                            ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE")):
            with self.subTest(env=env):
                env = dict(env, DATABASE_URL=database_url(db))
                code, out, err = run_server_once(env, timeout=20)
                self.assertNotEqual(code, 0)
                self.assertIn(needle, err)


if __name__ == "__main__":
    import unittest
    unittest.main()
