"""test_account_security: the account holes of issue 11 closed, end to end.

API tokens expire and carry the two-factor state of the session that made
them; a password reset and turning two-factor off revoke them.  Every
endpoint that checks a two-factor code shares one lockout; enrolling ends
the user's other sessions; secrets are sealed at rest.  Logins slow down
instead of locking out, and the owner with the right password and code
always gets in; X-Forwarded-For is believed only from TRUSTED_PROXIES.
Sign-up answers the same for a taken address and tells its owner by
email.  The demo seed never resets a password and makes no site admin off
loopback.  PostgreSQL and Redis want passwords; the admin socket refuses
other users."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import (PG_HOST, PG_PASSWORD, PG_PORT, PG_USER, REDIS_PASSWORD,
                     REDIS_PORT, SLOW, StudyhubTestCase, new_dir, redis_command,
                     redis_url, request, wait_until)
from test_accounts import (GATE, LOGIN, LOGIN_2FA, ME, PASSWORD, SIGNUP, TOKENS,
                           TOTP, AccountCase, csrf, totp, unique_email, wrong_code)

RESEARCHER_ROUTE = "/api/v1/researcher/studies/"
EXPIRED = "Token has expired: make a new one."


class TwoFactorHelpers:
    """Enrolment and codes for AccountCase tests."""

    def enable_totp(self, c):
        """Enrols and confirms TOTP in session c; returns (secret, step)."""
        r = c.post(TOTP, headers=csrf(c))
        self.assertStatus(r, 201)
        secret = r.json["data"]["attributes"]["secret"]
        code, step = totp(secret)
        self.assertStatus(c.post(TOTP + "confirm/", json_body={"code": code},
                                 headers=csrf(c)), 200)
        return secret, step

    def fresh_code(self, acct, secret):
        """A code that has not been used yet (forgets the spent steps)."""
        self.w.sql("UPDATE user_totp t SET last_step = 0 FROM users u"
                   f" WHERE u.id = t.user_id AND lower(u.email) = lower('{acct['email']}')")
        return totp(secret)[0]

    def make_token(self, c, name="t"):
        r = c.post(TOKENS, json_body={"name": name}, headers=csrf(c))
        self.assertStatus(r, 201)
        return r.json["data"]

    def token_get(self, key, path=ME):
        return request(self.srv.port, "GET", path, token="Token " + key)

    def assertTokenDead(self, key, detail=None):
        def dead():
            r = self.token_get(key)
            return r.status == 401 and r
        r = wait_until(dead, 5 * SLOW, message="the token refused")
        self.assertEqual(r.json["errors"][0]["code"], "authentication_failed")
        if detail:
            self.assertEqual(r.json["errors"][0]["detail"], detail)


class TokenSecurityTest(TwoFactorHelpers, AccountCase):
    server_env = {"TWO_FACTOR_MAX_FAILURES": "100", "TOKEN_TTL_DAYS": "30"}

    def test_token_expires(self):
        acct = self.account("exp")
        c = self.session(acct)
        tok = self.make_token(c)
        key = tok["attributes"]["key"]
        self.assertRegex(tok["attributes"]["expires"], r"^\d{4}-\d\d-\d\dT")
        days = float(self.w.sql(
            "SELECT extract(epoch FROM expires_at - now()) / 86400 FROM api_tokens"
            f" WHERE token_hash = '{hashlib.sha256(key.encode()).hexdigest()}'"))
        self.assertTrue(29.9 < days <= 30, days)             # TOKEN_TTL_DAYS
        self.assertStatus(self.token_get(key), 200)          # now in the token cache
        self.w.sql("UPDATE api_tokens SET expires_at = now() - interval '1 second'"
                   f" WHERE token_hash = '{hashlib.sha256(key.encode()).hexdigest()}'")
        self.assertTokenDead(key, EXPIRED)

    def test_token_of_an_unverified_session_is_not_verified(self):
        acct = self.account("pat")                            # a participant
        c = self.session(acct)
        tok = self.make_token(c)
        self.assertFalse(tok["attributes"]["two_factor_verified"])
        key = tok["attributes"]["key"]
        # Made a researcher later: the token still cannot pass the gate.
        self.w.sql(f"UPDATE users SET is_researcher = true WHERE lower(email) = lower('{acct['email']}')")
        r = wait_until(lambda: (lambda r: r.status == 403 and r)(self.token_get(key, RESEARCHER_ROUTE)),
                       5 * SLOW, message="403 from the researcher route")
        self.assertEqual(r.json["errors"][0]["code"], "two_factor_required")
        self.assertFalse(self.token_get(key).json["data"]["attributes"]["two_factor_verified"])
        # Even once the user turns two-factor on: it was made without it.
        self.enable_totp(c)
        self.assertEqual(self.token_get(key, RESEARCHER_ROUTE).status, 403)

    def test_token_of_a_verified_session_and_of_an_operator(self):
        acct = self.account("rita", researcher=True)
        c = self.session(acct)
        self.enable_totp(c)
        tok = self.make_token(c)
        self.assertTrue(tok["attributes"]["two_factor_verified"])
        self.assertStatus(self.token_get(tok["attributes"]["key"], RESEARCHER_ROUTE), 200)
        # studyhubctl token create: the operator is trusted as verified.
        out = self.srv.ctl("token", "create", acct["email"])
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        key = out.stdout.strip().splitlines()[0]
        self.assertStatus(self.token_get(key, RESEARCHER_ROUTE), 200)

    def test_password_reset_revokes_tokens(self):
        acct = self.account("rev")
        c = self.session(acct)
        keys = [self.make_token(c, n)["attributes"]["key"] for n in ("a", "b")]
        for k in keys:
            self.assertStatus(self.token_get(k), 200)
        self.assertStatus(self.srv.post("/api/v1/accounts/password-reset/",
                                        json_body={"email": acct["email"]}), 202)
        token = self.link_token(self.mail_to(acct["email"], n=2, kind="password_reset"),
                                "password-reset")
        self.assertStatus(self.srv.post("/api/v1/accounts/password-reset/confirm/",
                                        json_body={"token": token,
                                                   "password": "another good password"}), 204)
        for k in keys:
            self.assertTokenDead(k)
        self.assertEqual(self.w.sql(
            "SELECT count(*) FROM api_tokens t JOIN users u ON u.id = t.user_id"
            f" WHERE lower(u.email) = lower('{acct['email']}')"), "0")

    def test_turning_two_factor_off_revokes_tokens(self):
        acct = self.account("off", researcher=True)
        c = self.session(acct)
        secret, _ = self.enable_totp(c)
        key = self.make_token(c)["attributes"]["key"]
        self.assertStatus(self.token_get(key, RESEARCHER_ROUTE), 200)
        self.assertStatus(c.post(TOTP + "disable/", json_body={"code": self.fresh_code(acct, secret)},
                                 headers=csrf(c)), 204)
        self.assertTokenDead(key)


class TwoFactorLimitTest(TwoFactorHelpers, AccountCase):
    server_env = {"TWO_FACTOR_MAX_FAILURES": "3", "TWO_FACTOR_LOCKOUT_S": "600"}

    def assertLocked(self, r):
        self.assertStatus(r, 429)
        self.assertEqual(r.json["errors"][0]["code"], "too_many_attempts")
        self.assertTrue(1 <= int(r.headers["retry-after"]) <= 600, r.headers)

    def test_one_lockout_for_every_endpoint(self):
        acct = self.account("lock")
        c = self.session(acct)
        secret, _ = self.enable_totp(c)
        bad = {"code": wrong_code(secret)}
        for _ in range(3):
            self.assertError(c.post(TOTP + "disable/", json_body=bad, headers=csrf(c)),
                             400, "invalid", "/code")
        self.assertLocked(c.post(TOTP + "disable/", json_body=bad, headers=csrf(c)))
        # The right code does not help, on this endpoint or any other.
        good = self.fresh_code(acct, secret)
        self.assertLocked(c.post(TOTP + "recovery-codes/", json_body={"code": good},
                                 headers=csrf(c)))
        self.assertLocked(c.post(TOTP + "disable/", json_body={"recovery_code": "aaaa-bbbb-cccc-dddd"},
                                 headers=csrf(c)))
        c2 = self.srv.client()
        r = self.login(c2, acct)
        self.assertStatus(r, 202)
        self.assertLocked(c2.post(LOGIN_2FA, json_body={"challenge": r.json["meta"]["challenge"],
                                                        "code": good}))
        # Nothing changed meanwhile.
        self.assertTrue(c.get(TOTP).json["data"]["attributes"]["enabled"])
        # A password reset starts a fresh count (and ends the sessions).
        self.assertStatus(self.srv.post("/api/v1/accounts/password-reset/",
                                        json_body={"email": acct["email"]}), 202)
        token = self.link_token(self.mail_to(acct["email"], n=3, kind="password_reset"),
                                "password-reset")
        self.assertStatus(self.srv.post("/api/v1/accounts/password-reset/confirm/",
                                        json_body={"token": token, "password": PASSWORD + "!"}), 204)
        c3 = self.srv.client()
        r = self.login(c3, acct, password=PASSWORD + "!")
        self.assertStatus(r, 202)
        self.assertStatus(c3.post(LOGIN_2FA, json_body={"challenge": r.json["meta"]["challenge"],
                                                        "code": good}), 200)

    def test_wrong_codes_while_enrolling_count_too(self):
        acct = self.account("enrol")
        c = self.session(acct)
        r = c.post(TOTP, headers=csrf(c))
        secret = r.json["data"]["attributes"]["secret"]
        for _ in range(3):
            self.assertError(c.post(TOTP + "confirm/", json_body={"code": wrong_code(secret)},
                                    headers=csrf(c)), 400, "invalid", "/code")
        self.assertLocked(c.post(TOTP + "confirm/", json_body={"code": totp(secret)[0]},
                                 headers=csrf(c)))
        self.assertTrue(c.get(TOTP).json["data"]["attributes"]["pending"])

    def test_enrolling_ends_the_other_sessions(self):
        acct = self.account("two")
        c1, c2 = self.session(acct), self.session(acct)
        self.assertStatus(c2.get(ME), 200)
        self.enable_totp(c1)
        self.assertError(c2.get(ME), 401, "not_authenticated")
        me = c1.get(ME)
        self.assertStatus(me, 200)
        self.assertTrue(me.json["data"]["attributes"]["two_factor_verified"])
        # The session that enrolled goes on writing (its CSRF token too).
        self.assertStatus(c1.post(TOKENS, headers=csrf(c1)), 201)

    def test_secrets_are_sealed_at_rest(self):
        acct = self.account("seal")
        c = self.session(acct)
        r = c.post(TOTP, headers=csrf(c))
        secret = r.json["data"]["attributes"]["secret"]
        where = (f"FROM user_totp t JOIN users u ON u.id = t.user_id"
                 f" WHERE lower(u.email) = lower('{acct['email']}')")
        stored = self.w.sql(f"SELECT t.secret {where}")
        self.assertRegex(stored, r"^v1:[A-Za-z0-9+/]{80}$")
        self.assertNotIn(secret, stored)
        code, _ = totp(secret)
        self.assertStatus(c.post(TOTP + "confirm/", json_body={"code": code}, headers=csrf(c)), 200)
        self.assertEqual(self.w.sql(f"SELECT count(*) {where} AND t.secret LIKE '%{secret}%'"), "0")
        # A plaintext secret from an older version still works, and its
        # next use seals it.
        self.w.sql(f"UPDATE user_totp t SET secret = '{secret}', last_step = 0 FROM users u"
                   f" WHERE u.id = t.user_id AND lower(u.email) = lower('{acct['email']}')")
        c2 = self.srv.client()
        r = self.login(c2, acct)
        self.assertStatus(c2.post(LOGIN_2FA, json_body={"challenge": r.json["meta"]["challenge"],
                                                        "code": totp(secret)[0]}), 200)
        self.assertRegex(self.w.sql(f"SELECT t.secret {where}"), r"^v1:")
        # Another user's sealed secret does not open for this one.
        other = self.account("seal2")
        c3 = self.session(other)
        c3.post(TOTP, headers=csrf(c3))
        self.w.sql("UPDATE user_totp SET secret = (SELECT t.secret FROM user_totp t JOIN users u"
                   f" ON u.id = t.user_id WHERE lower(u.email) = lower('{acct['email']}'))"
                   " WHERE user_id = (SELECT id FROM users"
                   f" WHERE lower(email) = lower('{other['email']}'))")
        self.assertStatus(c3.post(TOTP + "confirm/", json_body={"code": totp(secret)[0]},
                                  headers=csrf(c3)), 500)


class ForwardedLogins:
    """Logins whose client address comes from X-Forwarded-For
    (TRUSTED_PROXIES is the loopback peer)."""

    def attempt(self, client, acct, addr, password=None):
        time.sleep(0.12)          # the process-wide argon2 budget is not tested here
        return self.login(client, acct, password=password,
                          headers={"X-Forwarded-For": addr})


class LoginSlowDownTest(ForwardedLogins, TwoFactorHelpers, AccountCase):
    """Failures per account and per client address."""

    server_env = {"TRUSTED_PROXIES": "127.0.0.1, ::1", "LOGIN_DELAY_FREE_ACCOUNT": "0",
                  "LOGIN_DELAY_FREE_ADDR": "0",
                  "LOGIN_DELAY_MAX_S": "8", "LOGIN_RATE_WINDOW_S": "60",
                  "TWO_FACTOR_MAX_FAILURES": "100"}

    def test_owner_with_password_and_code_gets_in(self):
        acct = self.account("owner")
        c = self.session(acct)
        secret, _ = self.enable_totp(c)
        bad = "not the password"
        x = self.srv.client()
        a = "198.51.100.7"
        self.assertStatus(self.attempt(x, acct, a, bad), 400)       # delay 1 s
        time.sleep(1.1)
        self.assertStatus(self.attempt(x, acct, a, bad), 400)       # 2 s
        r = self.attempt(x, acct, a, bad)                           # too early: refused
        self.assertStatus(r, 429)
        self.assertEqual(r.json["errors"][0]["code"], "too_many_attempts")
        self.assertTrue(1 <= int(r.headers["retry-after"]) <= 2)
        time.sleep(2.1)
        self.assertStatus(self.attempt(x, acct, a, bad), 400)       # 4 s on the account
        # Meanwhile the owner, from another address: in, with the code.
        o = self.srv.client()
        r = self.attempt(o, acct, "203.0.113.5")
        self.assertStatus(r, 202)
        ch = r.json["meta"]["challenge"]
        r = o.post(LOGIN_2FA, json_body={"challenge": ch, "code": self.fresh_code(acct, secret)})
        self.assertStatus(r, 200)
        self.assertTrue(r.json["data"]["attributes"]["two_factor_verified"])

        # A wrong password in the account's delay looks the same, and no
        # code completes it, not even the right one.
        self.assertStatus(self.attempt(x, acct, "198.51.100.8", bad), 400)  # forgiven: counted again
        y = self.srv.client()
        r = self.attempt(y, acct, "198.51.100.9", bad)
        self.assertStatus(r, 202)
        self.assertError(y.post(LOGIN_2FA, json_body={"challenge": r.json["meta"]["challenge"],
                                                      "code": self.fresh_code(acct, secret)}),
                         400, "invalid", "/code")

    def test_account_without_second_factor_is_slowed_not_locked(self):
        acct = self.account("plain")
        x = self.srv.client()
        self.assertStatus(self.attempt(x, acct, "198.51.100.20", "not the password"), 400)
        o = self.srv.client()
        r = self.attempt(o, acct, "203.0.113.20")
        self.assertStatus(r, 429)
        self.assertEqual(int(r.headers["retry-after"]), 1)
        time.sleep(1.1)
        self.assertStatus(self.attempt(o, acct, "203.0.113.20"), 200)
        # The success forgave the account.
        self.assertStatus(self.attempt(o, acct, "203.0.113.21", "not the password"), 400)


class TrustedProxyTest(ForwardedLogins, AccountCase):
    """Which address a failure is counted on.  The first delay is a minute,
    so a slow machine cannot see it run out between two attempts."""

    server_env = {"TRUSTED_PROXIES": "127.0.0.1, ::1", "LOGIN_DELAY_FREE_ACCOUNT": "1000",
                  "LOGIN_DELAY_FREE_ADDR": "0", "LOGIN_DELAY_FIRST_MS": "60000",
                  "LOGIN_DELAY_MAX_S": "60", "LOGIN_RATE_WINDOW_S": "600"}

    def test_forwarded_for_from_a_trusted_proxy(self):
        x = self.srv.client()
        bad = "not the password"
        a = {"email": unique_email("nobody1"), "password": bad}
        b = {"email": unique_email("nobody2"), "password": bad}
        d = {"email": unique_email("nobody3"), "password": bad}
        self.assertStatus(self.attempt(x, a, "192.0.2.1"), 400)
        self.assertStatus(self.attempt(x, b, "192.0.2.2"), 400)     # another client
        self.assertStatus(self.attempt(x, d, "192.0.2.1"), 429)     # that one again
        # What the client wrote left of the proxy's entry does not count.
        self.assertStatus(self.attempt(x, d, "10.1.2.3, 192.0.2.1"), 429)
        # Proxies named in TRUSTED_PROXIES are skipped from the right.
        self.assertStatus(self.attempt(x, d, "192.0.2.1, 127.0.0.1"), 429)


class UntrustedProxyTest(StudyhubTestCase):

    def test_forwarded_for_ignored_unless_trusted(self):
        for proxies in ("", "10.9.9.9/32"):
            with self.subTest(proxies=proxies):
                redis = self.redis()
                srv = self.server(env={"TRUSTED_PROXIES": proxies, "LOGIN_DELAY_FREE_ADDR": "0",
                                       "LOGIN_DELAY_FIRST_MS": "60000",
                                       "MAIL_DIR": new_dir("mail")},
                                  redis_url=redis.url)
                for i, (addr, status) in enumerate((("192.0.2.1", 400), ("192.0.2.2", 429))):
                    time.sleep(0.12)
                    r = srv.post(LOGIN, json_body={"email": unique_email(f"n{i}"),
                                                   "password": "not the password"},
                                 headers={"X-Forwarded-For": addr})
                    self.assertStatus(r, status)   # one peer, one counter

    def test_bad_trusted_proxies_refuse_to_start(self):
        from harness import run_server_once
        for value in ("10.0.0.0/33", "nope", "1.2.3.4/x"):
            with self.subTest(value=value):
                code, _, err = run_server_once({"TRUSTED_PROXIES": value})
                self.assertEqual(code, 2)
                self.assertIn("TRUSTED_PROXIES", err)


class SignupExistingTest(AccountCase):

    def test_same_answer_and_an_email_to_the_owner(self):
        acct = self.account("owner")
        before = int(self.w.sql("SELECT count(*) FROM users"))
        fresh = self.srv.post(SIGNUP, json_body={"email": unique_email("new"), "password": PASSWORD})
        self.assertStatus(fresh, 201)
        t0 = time.monotonic()
        r = self.srv.post(SIGNUP, json_body={"email": acct["email"].upper(),
                                             "password": "someone else's password"})
        self.assertStatus(r, 201)
        self.assertTrue(time.monotonic() - t0 > 0.01)      # the password was hashed
        self.assertEqual(set(r.json), set(fresh.json))
        self.assertEqual(set(r.json["data"]["attributes"]), set(fresh.json["data"]["attributes"]))
        self.assertEqual(r.json["meta"], fresh.json["meta"])
        self.assertNotEqual(r.json["data"]["id"], acct["uuid"])
        self.assertEqual(int(self.w.sql("SELECT count(*) FROM users")), before + 1)
        msg = self.mail_to(acct["email"], n=2, kind="signup_existing")
        self.assertIn("tried to create an account", msg.text)
        self.assertIn("log in", msg.text)
        # The owner's password still works.
        self.assertStatus(self.login(self.srv.client(), acct), 200)


class SeedDemoTest(StudyhubTestCase):

    def login(self, srv, email, password):
        time.sleep(0.12)
        return srv.post(LOGIN, json_body={"email": email, "password": password})

    def test_never_resets_a_password(self):
        srv = self.server()
        out = srv.ctl("seed-demo", "--if-empty")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("password studyhub-researcher", out.stdout)
        self.assertStatus(self.login(srv, "researcher@demo.studyhub.test", "studyhub-researcher"), 200)
        # The researcher's password changes (here: becomes the participant's).
        from harness import psql
        psql("UPDATE users SET password_hash = (SELECT password_hash FROM users"
             " WHERE email = 'participant@demo.studyhub.test')"
             " WHERE email = 'researcher@demo.studyhub.test'", db=srv.database)
        out = srv.ctl("seed-demo", "--if-empty")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("skipped", out.stdout)
        out = srv.ctl("seed-demo")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(out.stdout.count("(existing account: password unchanged)"), 3, out.stdout)
        self.assertStatus(self.login(srv, "researcher@demo.studyhub.test", "studyhub-researcher"), 400)
        self.assertStatus(self.login(srv, "researcher@demo.studyhub.test", "studyhub-participant"), 200)
        self.assertNotEqual(srv.ctl("seed-demo", "--bogus").returncode, 0)

    def test_no_site_admin_off_loopback(self):
        srv = self.server(env={"LISTEN_ADDR": "0.0.0.0", "BASE_URL": "http://studyhub.test"})
        out = srv.ctl("seed-demo")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertRegex(out.stdout, r"site admin +not made")
        from harness import psql
        self.assertEqual(psql("SELECT count(*) FROM users WHERE is_site_admin",
                              db=srv.database).strip(), "0")
        self.assertIn("researcher@demo.studyhub.test", out.stdout)


class ServiceCredentialsTest(StudyhubTestCase):

    def test_postgres_over_tcp_needs_the_password(self):
        if not PG_PASSWORD:
            self.skipTest("run by tools/test (TEST_PG_PASSWORD)")
        cmd = ["psql", "-X", "-w", "-A", "-t", "-h", PG_HOST, "-p", str(PG_PORT),
               "-U", PG_USER, "-d", "postgres", "-c", "SELECT 1"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(bad.returncode, 0)
        self.assertRegex(bad.stderr, r"password")
        wrong = subprocess.run(cmd, env=dict(env, PGPASSWORD="wrong"), capture_output=True,
                               text=True, timeout=30)
        self.assertNotEqual(wrong.returncode, 0)
        good = subprocess.run(cmd, env=dict(env, PGPASSWORD=PG_PASSWORD), capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(good.stdout.strip(), "1", good.stderr)

    def test_redis_needs_the_password(self):
        if not REDIS_PASSWORD:
            self.skipTest("run by tools/test (TEST_REDIS_PASSWORD)")
        self.assertTrue(redis_command(REDIS_PORT, "PING").startswith(b"-NOAUTH"))
        self.assertTrue(redis_command(REDIS_PORT, "PING", password=REDIS_PASSWORD)
                        .startswith(b"+PONG"))
        # A server with the wrong password says so (and serves no session).
        srv = self.server(redis_url=redis_url(password="wrong"))
        wait_until(lambda: "AUTH failed" in srv.log_text(), 10 * SLOW,
                   message="AUTH failed in the log")
        r = request(srv.port, "GET", ME, cookies={"sessionid": "a" * 64})
        self.assertStatus(r, 503)

    def test_redis_url_with_a_password_is_checked(self):
        from harness import run_server_once
        for value in ("redis://user:pw@127.0.0.1:6379/0", "redis://:@127.0.0.1:6379/0",
                      "redis://:pw@redis.example:6379/0"):
            with self.subTest(value=value):
                code, _, err = run_server_once({"REDIS_URL": value})
                self.assertEqual(code, 2)
                self.assertIn("REDIS_URL", err)
                self.assertNotIn("pw@", err)          # a password is never echoed

    def test_the_totp_key_is_required(self):
        from harness import run_server_once
        code, _, err = run_server_once({"TOTP_SECRET_KEY": None})
        self.assertEqual(code, 2)
        self.assertIn("TOTP_SECRET_KEY is not set", err)
        code, _, err = run_server_once({"TOTP_SECRET_KEY": "abcd"})
        self.assertEqual(code, 2)
        self.assertIn("TOTP_SECRET_KEY", err)
        self.assertNotIn("abcd", err)

    def test_admin_socket_refuses_other_users(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to act as another user")
        # A folder the other user can enter, so only the socket decides.
        d = tempfile.mkdtemp(prefix="sh-sock-", dir="/tmp")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        sock = os.path.join(d, "admin.sock")
        srv = self.server(env={"ADMIN_SOCKET": sock})
        self.assertFileMode(sock, 0o600)
        # Even with the file opened up, another user is refused.
        os.chmod(sock, 0o666)
        py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        # The refusal comes at once, before any command is read.
        code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
                " print(s.recv(200).decode())")
        r = subprocess.run([py, "-c", code, sock], user=65534, group=65534,
                           capture_output=True, text=True, timeout=30)
        self.assertIn("ERR permission denied", r.stdout, r.stderr)
        self.assertIn("refused a client of uid 65534", srv.log_text())
        # Its own user still gets in.
        from harness import ctl
        self.assertEqual(ctl("status", admin_socket=sock).returncode, 0)


class SealAtStartTest(StudyhubTestCase):

    def test_plaintext_secrets_are_sealed_at_start(self):
        from apifixtures import World
        srv = self.server()
        w = World(srv)
        u = w.user("old")
        plain = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        w.sql(f"INSERT INTO user_totp (user_id, secret, confirmed_at)"
              f" VALUES ({u['id']}, '{plain}', now())")
        self.server(database=srv.database)          # another start on the same data
        wait_until(lambda: w.sql(f"SELECT secret FROM user_totp WHERE user_id = {u['id']}")
                   .startswith("v1:"), 10 * SLOW, message="the secret sealed")
