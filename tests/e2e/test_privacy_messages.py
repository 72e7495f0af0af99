"""test_privacy_messages: researchers with edit_study__message_set write
to the families of a study's participants (one, several, all readable),
through the mail outbox and the families' email preferences; families
read their messages on their account (issue 15 point 4).  Every refusal
sends nothing."""

import email
import os

from harness import StudyhubTestCase, new_dir, server_env, wait_until, SLOW
from researchfixtures import ResearchWorld

SEND = "/api/v1/researcher/studies/{}/messages/"


def doc(**attrs):
    return {"data": {"type": "messages", "attributes": attrs}}


class MessagesTest(StudyhubTestCase):

    def setUp(self):
        self.mail = new_dir("mail")
        self.srv = self.server(env=server_env({"MAIL_DIR": self.mail, "MAIL_POLL_S": "1"}))
        rw = self.rw = ResearchWorld(self.srv)
        w = self.w = rw.w
        self.writer = w.user("writer", researcher=True)
        w.study_member(rw.study, self.writer, "researcher")
        self.path = SEND.format(rw.study["uuid"])

    def counts(self):
        return (self.w.sql("SELECT count(*) FROM family_messages"),
                self.w.sql("SELECT count(*) FROM mail_outbox WHERE kind = 'family_message'"))

    def mails(self):
        out = []
        for name in os.listdir(self.mail):
            if name.endswith(".eml"):
                with open(os.path.join(self.mail, name), "rb") as f:
                    msg = email.message_from_bytes(f.read())
                if msg["X-Studyhub-Kind"] == "family_message":
                    out.append(msg)
        return out

    def own(self, who):
        r = self.rw.api(who, "GET", "/api/v1/messages/")
        self.assertStatus(r, 200)
        return r.json

    def test_one_family_then_all_readable(self):
        rw, w = self.rw, self.w
        acc = rw.r["accepted"]
        r = rw.api(self.writer, "POST", self.path,
                   doc(subject=" A question ", body="Did the video play?\nThanks.",
                       kind="response_questions", responses=[acc["uuid"]]))
        self.assertStatus(r, 201)
        a = r.json["data"]["attributes"]
        self.assertEqual((a["recipients"], a["emailed"], a["subject"], a["kind"]),
                         (1, 1, "A question", "response_questions"))
        got = self.own(acc["parent"])
        self.assertEqual(got["links"]["meta"]["count"], 1)
        m = got["data"][0]["attributes"]
        self.assertEqual((m["subject"], m["body"], m["study"]["name"]),
                         ("A question", "Did the video play?\nThanks.", "Research"))
        self.assertEqual(self.own(rw.r["rejected"]["parent"])["data"], [])

        # All: the families of readable responses only (accepted and the
        # accepted-then-withdrawn; preview for whoever may read previews).
        # The withdrawn family turned study updates off: kept, not emailed.
        w.sql("UPDATE users SET email_study_updates = false"
              f" WHERE id = {rw.r['withdrawn']['parent']['id']}")
        r = rw.api(self.writer, "POST", self.path, doc(subject="News", body="Results soon",
                                                          all=True))
        self.assertStatus(r, 201)
        a = r.json["data"]["attributes"]
        self.assertEqual((a["recipients"], a["emailed"], a["kind"]), (3, 2, "study_updates"))
        for state, n in (("accepted", 2), ("withdrawn", 1), ("preview", 1), ("rejected", 0),
                         ("pending", 0)):
            self.assertEqual(self.own(rw.r[state]["parent"])["links"]["meta"]["count"], n, state)
        # Delivered through the outbox: 3 emails, to the right people.
        wait_until(lambda: len(self.mails()) == 3, 30 * SLOW, interval=0.2, message="3 mails")
        to = sorted(m["To"] for m in self.mails())
        want = sorted([acc["parent"]["email"], acc["parent"]["email"],
                       rw.r["preview"]["parent"]["email"]])
        self.assertEqual([t.split("<")[-1].rstrip(">") for t in to], want)
        for m in self.mails():
            self.assertIn("Research", m.get_payload(decode=True).decode())
        # The study's list: counts, no family named.
        r = rw.api(self.writer, "GET", self.path)
        self.assertStatus(r, 200)
        self.assertEqual([(d["attributes"]["subject"], d["attributes"]["recipients"])
                          for d in r.json["data"]], [("News", 3), ("A question", 1)])
        self.assertNotIn(acc["parent"]["email"], r.body.decode())

    def test_refusals_send_nothing(self):
        rw = self.rw
        before = self.counts()
        ok = dict(subject="Hi", body="Hello", all=True)
        # Permissions: a member reading responses but without
        # edit_study__message_set; another lab; a family; nobody.
        for who, status in ((rw.u["analysis"], 403), (rw.u["other"], 404),
                            (rw.r["accepted"]["parent"], 404), (None, 401)):
            self.assertStatus(rw.api(who, "POST", self.path, doc(**ok)), status)
            if who is not None and status != 403:
                self.assertStatus(rw.api(who, "GET", self.path), status)
        self.assertStatus(rw.api(rw.u["analysis"], "GET", self.path), 403)
        # Unknown study ids.
        for sid in ("00000000-0000-4000-8000-000000000000", "nope"):
            self.assertStatus(rw.api(self.writer, "POST", SEND.format(sid), doc(**ok)), 404)
        # Responses the writer may not read (pending, rejected), or unknown.
        for bad in ([rw.r["pending"]["uuid"]], [rw.r["accepted"]["uuid"], rw.r["rejected"]["uuid"]],
                    ["00000000-0000-4000-8000-000000000000"]):
            r = rw.api(self.writer, "POST", self.path, doc(subject="Hi", body="x", responses=bad))
            self.assertStatus(r, 404)
        # Malformed bodies.
        for attrs, pointer in (
                (dict(body="x", all=True), "/data/attributes/subject"),
                (dict(subject="", body="x", all=True), "/data/attributes/subject"),
                (dict(subject="x" * 201, body="x", all=True), "/data/attributes/subject"),
                (dict(subject="x", body=5, all=True), "/data/attributes/body"),
                (dict(subject="x", body="x"), "/data/attributes/responses"),
                (dict(subject="x", body="x", all=True, responses=[]), "/data/attributes/responses"),
                (dict(subject="x", body="x", responses=["not-a-uuid"]), "/data/attributes/responses"),
                (dict(subject="x", body="x", responses="abc"), "/data/attributes/responses"),
                (dict(subject="x", body="x", all="yes"), "/data/attributes/all"),
                (dict(subject="x", body="x", all=True, kind="spam"), "/data/attributes/kind")):
            r = rw.api(self.writer, "POST", self.path, doc(**attrs))
            self.assertStatus(r, 400, attrs)
            self.assertEqual(r.json["errors"][0]["source"]["pointer"], pointer, attrs)
        for raw in ("{", "[]", '{"data": {"type": "feedback", "attributes": {}}}',
                    '{"data": {"type": "messages", "attributes": []}}'):
            r = rw.api(self.writer, "POST", self.path, raw=raw)
            self.assertTrue(400 <= r.status < 500 and r.status != 404, (raw, r.status))
        self.assertEqual(self.counts(), before)
        # The family list needs a login, and shows only one's own.
        self.assertStatus(rw.api(None, "GET", "/api/v1/messages/"), 401)
