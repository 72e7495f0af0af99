/* The cookie runner: the calls of the unchanged upstream runner
 * (ember-lookit-frameplayer's adapter), which the sandboxed page cannot
 * make: the study and child from the URL, the session as a cookie the
 * browser sends on its own, and X-CSRFToken from document.cookie's
 * csrftoken on every write.  No meta tag, no Authorization header.
 * It creates the response, PATCHes it complete and leaves for the exit
 * URL, /studies/history/, as the runner's default. */
(function () {
  "use strict";
  var JSONAPI = "application/vnd.api+json";
  var parts = location.pathname.split("/");      // "", "studies", study, child, ...
  var studyId = parts[2], childId = parts[3];
  var status = document.getElementById("status");

  function csrftoken() {
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? m[1] : "";
  }
  function api(method, path, body) {
    var headers = { Accept: JSONAPI };
    if (body !== undefined) {
      headers["Content-Type"] = JSONAPI;
      headers["X-CSRFToken"] = csrftoken();
    }
    return fetch(path, { method: method, headers: headers, credentials: "same-origin",
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.json().then(function (doc) {
          if (!r.ok) throw new Error(method + " " + path + ": " + r.status);
          return doc;
        });
      });
  }

  api("GET", "/api/v1/children/" + childId + "/")
    .then(function () {
      return api("POST", "/api/v1/responses/", { data: { type: "responses",
        attributes: { exp_data: {}, sequence: [] },
        relationships: { child: { data: { type: "children", id: childId } },
                         study: { data: { type: "studies", id: studyId } } } } });
    })
    .then(function (doc) {
      var id = doc.data.id;
      return api("PATCH", "/api/v1/responses/" + id + "/", { data: { type: "responses", id: id,
        attributes: { completed: true, sequence: ["0-cookie"],
                      exp_data: { "0-cookie": { csrftoken_read: csrftoken() !== "" } } } } });
    })
    .then(function () {
      status.textContent = "saved";
      location.href = "/studies/history/";
    })
    .catch(function (e) { status.textContent = "failed: " + e.message; });
})();
