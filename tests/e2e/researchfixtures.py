"""researchfixtures: one study with a response in every consent state
(accepted, rejected, pending, accepted-then-withdrawn, preview), the
people around it (who may do what), and identifiable markers in every
child, parent and demographics record, so the research tests can look for
leaks by searching the outputs for the markers."""

import json
import secrets

from apifixtures import World, lit

EXIT_WITHDRAWN = {"frameType": "EXIT", "withdrawal": True, "feedback": "free text"}


def marker(kind):
    """A unique string that must never appear in a de-identified output."""
    return f"LEAK{kind.upper()}{secrets.token_hex(4)}"


class ResearchWorld:
    def __init__(self, srv):
        w = self.w = World(srv)
        self.lab = w.lab("research")
        self.other_lab = w.lab("elsewhere")
        u = self.u = {}
        u["admin"] = w.user("lab-admin", researcher=True)          # every permission
        w.member(self.lab, u["admin"], "admin")
        u["member"] = w.user("lab-member", researcher=True)        # reads, rules nothing
        w.member(self.lab, u["member"], "member")
        u["other"] = w.user("other-lab", researcher=True)          # admin of another lab
        w.member(self.other_lab, u["other"], "admin")
        self.study = w.study(self.lab, "Research")
        u["preview"] = w.user("preview", researcher=True)          # preview read only
        w.study_member(self.study, u["preview"], "preview")
        u["design"] = w.user("design", researcher=True)            # preview rulings only
        w.study_member(self.study, u["design"], "design")
        u["analysis"] = w.user("analysis", researcher=True)        # reads, no identifiable
        w.study_member(self.study, u["analysis"], "analysis")
        u["site"] = w.user("site-admin", researcher=True)
        w.sql(f"UPDATE users SET is_site_admin = true WHERE id = {u['site']['id']}")

        self.markers = {}
        self.r = {}
        for state in ("accepted", "rejected", "pending", "withdrawn", "preview"):
            name = marker("name" + state)
            self.markers[state] = name
            parent = w.user("parent-" + state)
            w.sql(f"UPDATE users SET nickname = {lit(marker('nick' + state))}"
                  f" WHERE id = {parent['id']}")
            child = w.child(parent, name=name, age_days=500,
                            additional_information=marker("info" + state),
                            existing_conditions=[marker("cond" + state)])
            demo = w.sql(
                "INSERT INTO demographic_data (user_id, country, additional_comments,"
                " guardians_explanation) VALUES"
                f" ({parent['id']}, 'US', {lit(marker('demo' + state))},"
                f" {lit(marker('guard' + state))}) RETURNING id").split("\n")[0]
            exp = {"0-video-consent": {"frameType": "CONSENT", "eventTimings": [
                       {"eventType": "exp-video-consent:recordingStarted", "streamTime": 1.5}]},
                   "1-study-intro": {"answer": "cats", "eventTimings": []}}
            if state == "withdrawn":
                exp["2-exit-survey"] = EXIT_WITHDRAWN
            rid, ru = w.row(
                "INSERT INTO responses (study_id, child_id, exp_data, sequence, is_preview,"
                " completed, completed_consent_frame, demographic_snapshot_id, withdrawn) VALUES"
                f" ({self.study['id']}, {child['id']}, {lit(exp)},"
                f" '[\"0-video-consent\",\"1-study-intro\"]', {lit(state == 'preview')},"
                f" true, true, {demo}, {lit(state == 'withdrawn')}) RETURNING id, uuid")
            self.r[state] = {"id": int(rid), "uuid": ru, "child": child, "parent": parent}
            for consent in (True, False):
                full = (f"{'consent-' if consent else ''}videoStream_{self.study['uuid']}_"
                        f"0-video-consent_{ru}_{secrets.randbelow(10**12)}_{secrets.randbelow(9999)}")
                w.sql("INSERT INTO videos (study_id, response_id, frame_id, full_name,"
                      " is_consent_footage) VALUES"
                      f" ({self.study['id']}, {rid}, '0-video-consent', {lit(full)}, {lit(consent)})")
        for state, action in (("accepted", "accepted"), ("rejected", "rejected"),
                              ("withdrawn", "accepted")):
            w.consent(self.r[state]["uuid"], action)

    def api(self, who, method, path, body=None, **kw):
        return self.w.api(self.u[who] if isinstance(who, str) else who, method, path, body, **kw)

    def all_markers(self):
        """Every identifiable marker of every family."""
        out = []
        for text in self.w.sql(
                "SELECT c.given_name || ' ' || c.additional_information || ' '"
                " || array_to_string(c.existing_conditions, ' ') || ' ' || u.nickname"
                " || ' ' || d.additional_comments || ' ' || d.guardians_explanation"
                " FROM responses r JOIN children c ON c.id = r.child_id"
                " JOIN users u ON u.id = c.user_id"
                " JOIN demographic_data d ON d.id = r.demographic_snapshot_id"
                f" WHERE r.study_id = {self.study['id']}").split("\n"):
            out += text.split()
        return out

    def state_markers(self, state):
        """The markers of one response's family."""
        return [m for m in self.all_markers() if state.upper() in m]

    def uuids(self, *states):
        return {self.r[s]["uuid"] for s in states}


def ruling(action, comments=""):
    return {"data": {"type": "consent-rulings",
                     "attributes": {"action": action, "comments": comments}}}


def dump(doc):
    return json.dumps(doc)
