"""Operating it: a backup taken with pg_dump and restored into a new
database serves the same study from a new server, with the same API
token; and `make install` puts the programs, the migrations and the
deployment examples in their places."""

import os
import re
import shutil
import subprocess
import tempfile

import harness
from harness import StudyhubTestCase

SEED_STUDY = "d3b5c0de-5eed-4a11-9e10-5757d1e5ba5e"
PARTICIPANT = "participant@demo.studyhub.test"


def pg_command(tool, *args):
    host = harness.PG_SOCKDIR or harness.PG_HOST
    return [tool, "-h", host, "-p", str(harness.PG_PORT), "-U", harness.PG_SUPERUSER, *args]


class BackupRestore(StudyhubTestCase):
    def test_pg_dump_restored_into_a_new_server_serves_the_same_study(self):
        old_db = self.database()
        old = self.server(database=old_db, env={"TASK_CONCURRENCY": "0"})
        out = old.ctl("seed-demo")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        out = old.ctl("token", "create", PARTICIPANT)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        token = "Token " + re.search(r"\b[0-9a-f]{40}\b", out.stdout).group(0)
        before = old.client(token).get(f"/api/v1/studies/{SEED_STUDY}/")
        self.assertStatus(before, 200)

        # The backup: a custom-format dump, as the README says to take it.
        dump = os.path.join(tempfile.mkdtemp(dir=harness.tmp_root()), "studyhub.dump")
        proc = subprocess.run(pg_command("pg_dump", "-Fc", "-f", dump, old_db),
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        old.stop()

        # The restore: a new, empty database owned by the server's role.
        new_db = self.database()
        proc = subprocess.run(pg_command("pg_restore", "--no-owner", "--role",
                                         harness.PG_USER, "-d", new_db, dump),
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        new = self.server(database=new_db, env={"TASK_CONCURRENCY": "0"})
        self.assertNotIn("migrate: applied", new.log_text(),
                         "the restored database was migrated again")
        after = new.client(token).get(f"/api/v1/studies/{SEED_STUDY}/")
        self.assertStatus(after, 200)
        self.assertEqual(after.json["data"]["attributes"], before.json["data"]["attributes"])


def psql(database, sql):
    proc = subprocess.run(pg_command("psql", "-v", "ON_ERROR_STOP=1", "-tAc", sql, database),
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc.stdout.strip()


class SqlFunctions(StudyhubTestCase):
    """sql/functions/ is the live text of every SQL function: each start
    applies it again, unless a server that knows more migrations did."""

    DEF = "SELECT md5(pg_get_functiondef('api_time(timestamptz)'::regprocedure))"
    HAND = ("CREATE OR REPLACE FUNCTION api_time(t timestamptz) RETURNS text "
            "LANGUAGE sql IMMUTABLE AS $$ SELECT 'edited by hand' $$")

    def test_every_start_puts_the_files_text_back(self):
        db = self.database()
        srv = self.server(database=db, env={"TASK_CONCURRENCY": "0"})
        newest = max(int(f.split("_")[0]) for f in os.listdir(os.path.join(harness.REPO_ROOT, "sql"))
                     if f.endswith(".sql"))
        self.assertEqual(psql(db, "SELECT migration FROM schema_functions"), str(newest))
        self.assertIn("migrate: SQL functions applied", srv.log_text())
        original = psql(db, self.DEF)
        srv.stop()

        psql(db, self.HAND)
        self.assertNotEqual(psql(db, self.DEF), original)
        srv = self.server(database=db, env={"TASK_CONCURRENCY": "0"})
        self.assertEqual(psql(db, self.DEF), original, "the hand edit survived a start")
        srv.stop()

        # A newer server applied them last: this older one leaves them be.
        psql(db, "UPDATE schema_functions SET migration = 99999")
        psql(db, self.HAND)
        srv = self.server(database=db, env={"TASK_CONCURRENCY": "0"})
        self.assertNotEqual(psql(db, self.DEF), original)
        self.assertIn("SQL functions left as a newer server set them", srv.log_text())
        self.assertEqual(psql(db, "SELECT migration FROM schema_functions"), "99999")


class Install(StudyhubTestCase):
    def test_make_install_puts_everything_in_place(self):
        build = os.path.dirname(harness.STUDYHUB_BIN)
        if not os.path.exists(os.path.join(build, "Makefile")):
            self.skipTest("the server was not built with this tree's Makefile")
        dest = tempfile.mkdtemp(dir=harness.tmp_root())
        self.addCleanup(shutil.rmtree, dest, True)
        proc = subprocess.run(["make", "-C", build, "install", f"DESTDIR={dest}"],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-2000:])
        files = set()
        for root, _, names in os.walk(dest):
            for n in names:
                files.add(os.path.relpath(os.path.join(root, n), dest))
        for want in ("bin/studyhub", "bin/studyhubctl", "share/doc/studyhub/README",
                     "share/doc/studyhub/deploy/studyhub.service",
                     "share/doc/studyhub/deploy/studyhub.env.example",
                     "share/doc/studyhub/deploy/nginx.conf.example",
                     "share/studyhub/static/index.html", "share/studyhub/static/js/api.js"):
            self.assertTrue(any(f.endswith(want) for f in files), f"{want} not installed")
        for sub in ("sql", "sql/functions"):
            got = sorted(os.path.basename(f) for f in files
                         if os.path.dirname(f).endswith("/share/studyhub/" + sub))
            shipped = sorted(f for f in os.listdir(os.path.join(harness.REPO_ROOT, sub))
                             if f.endswith(".sql"))
            self.assertTrue(shipped)
            self.assertEqual(got, shipped, sub)
        installed = next(f for f in files if f.endswith("bin/studyhub"))
        proc = subprocess.run([os.path.join(dest, installed), "--version"],
                              capture_output=True, text=True, timeout=10)
        self.assertEqual(proc.returncode, 0)
        self.assertTrue(proc.stdout.startswith("studyhub "))


class SharedLinks(StudyhubTestCase):
    """Without STORAGE_LINK_SECRET, file:// links are signed with a key
    derived from TOTP_SECRET_KEY, which every instance shares: a link one
    server made works on another, and after a restart."""

    def test_a_link_works_on_every_instance(self):
        import hashlib
        import hmac
        import time
        from urllib.parse import quote
        db = self.database()
        storage = harness.new_dir("shared-storage")
        env = {"STORAGE_URL": "file://" + storage, "TASK_CONCURRENCY": "0"}
        a = self.server(database=db, env=env)
        b = self.server(database=db, env=env)
        key = "shared/clip.mp4"
        os.makedirs(os.path.join(storage, "shared"), exist_ok=True)
        with open(os.path.join(storage, key), "wb") as f:
            f.write(b"frames")
        derived = hmac.new(bytes.fromhex(harness.TOTP_KEY), b"studyhub storage links v1",
                           hashlib.sha256).hexdigest()
        expires = int(time.time()) + 60
        sig = hmac.new(derived.encode(), f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()
        path = f"/storage/{quote(key)}?expires={expires}&sig={sig}"
        for srv in (a, b):
            r = srv.get(path)
            self.assertStatus(r, 200)
            self.assertEqual(r.body, b"frames")
        a.stop()
        a.start()
        self.assertStatus(a.get(path), 200)
        self.assertNotIn("random key", a.log_text())
