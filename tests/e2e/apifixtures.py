"""apifixtures: the people, labs, studies and children the runner-API tests
need, written straight into a test server's database with psql (API tokens
included), and the runner's own computations (the hashed child id of
runner-api.md section 4 and the exit URL of section 2) redone in Python so
the tests can check the server against them."""

import base64
import hashlib
import json
import secrets
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from harness import JSONAPI, psql, request

# runner-api.md section 6: a realistic frame-player protocol.
STRUCTURE = {
    "frames": {
        "video-config": {"kind": "exp-video-config", "troubleshootingIntro": ""},
        "video-consent": {
            "kind": "exp-lookit-video-consent", "template": "consent_005",
            "PIName": "Jane Smith", "institution": "Science University",
            "PIContact": "Jane Smith at 123 456 7890",
            "purpose": "Why do babies love cats?",
            "procedures": "Your child will be shown pictures of cats.",
            "payment": "No payment.", "datause": "We will measure looking time.",
            "include_databrary": True, "gdpr": False,
            "research_rights_statement": "You are not waiving any legal claims.",
        },
        "study-intro": {
            "kind": "exp-lookit-text", "showPreviousButton": False,
            "blocks": [{"title": "About the study", "text": "This is a test study.",
                        "emph": True}],
        },
        "exit-survey": {
            "kind": "exp-lookit-exit-survey",
            "debriefing": {"title": "Thank you!", "text": "You participated."},
        },
    },
    "sequence": ["video-config", "video-consent", "study-intro", "exit-survey"],
}

# StudySerializer's attributes (runner-api.md section 3), exactly.
STUDY_ATTRIBUTES = {
    "name", "short_description", "purpose", "criteria", "duration", "contact_info",
    "image", "structure", "generator", "use_generator", "display_full_screen",
    "exit_url", "state", "public", "pk",
}
CHILD_ATTRIBUTES = {
    "given_name", "birthday", "gender", "age_at_birth", "additional_information",
    "language_list", "condition_list", "deleted", "former_lookit_profile_id", "pk",
}
RESPONSE_WRITE_ATTRIBUTES = {
    "conditions", "global_event_timings", "exp_data", "sequence", "completed",
    "completed_consent_frame", "survey_consent", "is_preview", "pk", "withdrawn",
    "recording_method", "eligibility",
}
RESPONSE_READ_ATTRIBUTES = RESPONSE_WRITE_ATTRIBUTES | {"created_on", "hash_child_id"}


def hash_child_id(child_uuid, study_uuid, salt, digits=6):
    """accounts/utils.py hash_id: base32(sha256(child ^ study ^ salt))."""
    raw = bytes(a ^ b ^ c for a, b, c in zip(uuid.UUID(child_uuid).bytes,
                                             uuid.UUID(study_uuid).bytes,
                                             uuid.UUID(salt).bytes))
    enc = base64.b32encode(hashlib.sha256(raw).digest()).decode()
    return enc.translate(str.maketrans("10IO", "abcd"))[:digits]


def exit_url(url, hash_id, response_uuid):
    """The runner's addSearchParams: URL(exit_url), then set child and
    response in that order, keeping any query it had."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in ("child", "response")]
    query += [("child", str(hash_id)), ("response", str(response_uuid))]
    path = parts.path or "/"
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), parts.fragment))


def lit(value):
    """A SQL literal (test data only: the server never formats SQL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    return "'" + str(value).replace("'", "''") + "'"


def r1_body(child, study, preview=False):
    """R3 exactly as ember-data sends it (no id; created_on and
    hash_child_id null; no conditions)."""
    return {"data": {
        "attributes": {"global_event_timings": [], "exp_data": {}, "sequence": [],
                       "completed": False, "completed_consent_frame": False,
                       "survey_consent": False, "created_on": None, "is_preview": preview,
                       "hash_child_id": None, "recording_method": "recordrtc"},
        "relationships": {"child": {"data": {"type": "children", "id": child}},
                          "study": {"data": {"type": "studies", "id": study}}},
        "type": "responses"}}


class World:
    """Fixtures in one server's database.  Every maker returns a dict of
    what the tests need (ids, uuids, token)."""

    def __init__(self, srv):
        self.srv = srv
        self.db = srv.database

    def sql(self, text):
        return psql(text, db=self.db).strip()

    def row(self, text):
        out = self.sql(text)
        return out.split("\n")[0].split("|") if out else None

    # -- people and labs

    def user(self, name, researcher=False):
        email = f"{name}-{secrets.token_hex(4)}@example.test"
        uid, uu = self.row(
            f"INSERT INTO users (email, given_name, is_researcher) VALUES"
            f" ({lit(email)}, {lit(name)}, {lit(researcher)}) RETURNING id, uuid")
        token = secrets.token_hex(20)
        digest = hashlib.sha256(token.encode()).hexdigest()
        # As an operator's token (studyhubctl token create): two-factor verified.
        self.sql(f"INSERT INTO api_tokens (token_hash, user_id, mfa_verified)"
                 f" VALUES ({lit(digest)}, {uid}, true)")
        return {"id": int(uid), "uuid": uu, "email": email, "token": "Token " + token}

    def lab(self, name):
        lid, lu = self.row(f"INSERT INTO labs (name, approved_to_test) VALUES"
                           f" ({lit(name + '-' + secrets.token_hex(4))}, true) RETURNING id, uuid")
        return {"id": int(lid), "uuid": lu}

    def member(self, lab, user, role):
        self.sql(f"INSERT INTO lab_members (lab_id, user_id, role) VALUES"
                 f" ({lab['id']}, {user['id']}, {lit(role)})")

    def study_member(self, study, user, grp):
        self.sql(f"INSERT INTO study_members (study_id, user_id, grp) VALUES"
                 f" ({study['id']}, {user['id']}, {lit(grp)})")

    def study(self, lab, name="Cats", state="active", public=True, **cols):
        cols.setdefault("structure", STRUCTURE)
        cols.setdefault("exit_url", "https://lookit.example/studies/history/")
        cols.setdefault("contact_info", "Jane Smith")
        cols.setdefault("min_age_months", 6)
        cols.setdefault("max_age_years", 3)
        names = ["name", "lab_id", "state", "public"] + list(cols)
        values = [lit(name), str(lab["id"]), lit(state), lit(public)] + [lit(v) for v in cols.values()]
        sid, su, salt, digits = self.row(
            f"INSERT INTO studies ({', '.join(names)}) VALUES ({', '.join(values)})"
            f" RETURNING id, uuid, salt, hash_digits")
        return {"id": int(sid), "uuid": su, "salt": salt, "hash_digits": int(digits)}

    def child(self, user, name="Sally", age_days=400, gender="f", **cols):
        """A child age_days old; list values (languages_spoken,
        existing_conditions) become text[]."""
        def value(v):
            if isinstance(v, list):
                return "ARRAY[" + ", ".join(lit(x) for x in v) + "]::text[]"
            return lit(v)
        names = ["user_id", "given_name", "birthday", "gender"] + list(cols)
        values = ([str(user["id"]), lit(name), f"current_date - {int(age_days)}", lit(gender)]
                  + [value(v) for v in cols.values()])
        cid, cu = self.row(f"INSERT INTO children ({', '.join(names)}) VALUES"
                           f" ({', '.join(values)}) RETURNING id, uuid")
        return {"id": int(cid), "uuid": cu}

    def demographics(self, user):
        return self.row(f"INSERT INTO demographic_data (user_id, country) VALUES"
                        f" ({user['id']}, 'US') RETURNING uuid")[0]

    def consent(self, response_uuid, action="accepted"):
        self.sql(f"INSERT INTO consent_rulings (response_id, action)"
                 f" SELECT id, {lit(action)} FROM responses WHERE uuid = {lit(response_uuid)}")

    def response_row(self, response_uuid):
        """The stored response as a dict (jsonb columns parsed)."""
        out = self.sql(
            "SELECT row_to_json(r) FROM (SELECT uuid, completed, completed_consent_frame,"
            " survey_consent, exp_data, conditions, sequence, global_event_timings,"
            " is_preview, recording_method, eligibility, demographic_snapshot_id,"
            " child_id, study_id FROM responses"
            f" WHERE uuid = {lit(response_uuid)}) r")
        return json.loads(out) if out else None

    def count_responses(self):
        return int(self.sql("SELECT count(*) FROM responses"))

    # -- HTTP

    def api(self, who, method, path, body=None, raw=None, headers=None, **kw):
        """A JSON:API request as the runner makes it; who is a user dict
        (token auth), or None for no credentials."""
        hdrs = {"Accept": JSONAPI}
        if body is not None or raw is not None:
            hdrs["Content-Type"] = JSONAPI
        hdrs.update(headers or {})
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return request(self.srv.port, method, path, body=data, headers=hdrs,
                       token=who["token"] if who else None, **kw)

    def create_response(self, who, child, study, preview=False):
        r = self.api(who, "POST", "/api/v1/responses/",
                     r1_body(child["uuid"], study["uuid"], preview))
        assert r.status == 201, f"create failed: {r.status} {r.body[:500]!r}"
        return r.json["data"]["id"]
