/* The demo experiment runner: a tiny stand-in for ember-lookit-frameplayer
 * that makes the same API calls from the browser (runner-api.md section 1):
 * R1 the study, R2 the child, R3 POST the response, R4 the child's past
 * responses, a PATCH after every frame, and the exit to exit_url with the
 * hashed child id and the response id.  It shows each frame of the
 * protocol simply (its title and text) with a Next button, and needs no
 * network beyond the platform.
 *
 * The page is served sandboxed (an opaque origin, no cookies): the
 * platform writes a runner key into <meta name="studyhub-runner"> and the
 * runner sends it as "Authorization: Runner KEY". */
(function () {
  "use strict";
  var JSONAPI = "application/vnd.api+json";
  var meta = document.querySelector('meta[name="studyhub-runner"]');
  var parts = meta ? meta.getAttribute("content").split(" ") : [];
  var key = parts[0], studyId = parts[1], childId = parts[2], preview = parts[3] === "1";
  var $ = function (id) { return document.getElementById(id); };

  function fail(text) {
    $("error").textContent = text;
    $("error").hidden = false;
    $("next").hidden = true;
  }

  function api(method, path, body) {
    var headers = { Accept: JSONAPI, Authorization: "Runner " + key };
    if (body !== undefined) headers["Content-Type"] = JSONAPI;
    return fetch(path, { method: method, headers: headers, credentials: "omit",
                         body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.text().then(function (t) {
          var doc = t ? JSON.parse(t) : null;
          if (!r.ok) throw new Error((doc && doc.errors && doc.errors[0].detail) || ("HTTP " + r.status));
          return doc;
        });
      });
  }
  // Same-origin path of an absolute API link (the sandbox's origin is
  // opaque, but the document's URL is on the platform).
  function local(url) {
    var u = new URL(url, location.href);
    return u.pathname + u.search;
  }

  if (!key) { fail("This page must be opened from the study's page."); return; }

  var study, child, response, sequence = [], index = 0, expData = {};

  // What a frame says, simply: its title and texts, whatever its kind
  // (text blocks, a consent form's purpose and procedures, a debriefing).
  var KIND_TITLES = { "exp-video-config": "Check your webcam",
                      "exp-lookit-video-consent": "Consent",
                      "exp-lookit-exit-survey": "Thank you!" };
  function frameTitle(id, frame) {
    if (typeof frame.title === "string") return frame.title;
    if (frame.debriefing && frame.debriefing.title) return frame.debriefing.title;
    if (Array.isArray(frame.blocks) && frame.blocks[0] && frame.blocks[0].title) return frame.blocks[0].title;
    return KIND_TITLES[frame.kind] || id;
  }
  function frameText(frame) {
    var out = [];
    ["text", "prompt", "purpose", "procedures", "payment"].forEach(function (k) {
      if (typeof frame[k] === "string" && frame[k]) out.push(frame[k]);
    });
    if (Array.isArray(frame.blocks)) frame.blocks.forEach(function (b) {
      if (typeof b === "string") out.push(b);
      else if (b && typeof b.text === "string") out.push(b.text);
    });
    if (frame.debriefing && typeof frame.debriefing.text === "string") out.push(frame.debriefing.text);
    if (frame.kind === "exp-video-config") out.push("This demo records no video: press Next.");
    return out;
  }

  function show() {
    var id = sequence[index];
    var frame = (study.attributes.structure.frames || {})[id] || {};
    $("title").textContent = frameTitle(id, frame);
    var box = $("frame");
    box.textContent = "";
    frameText(frame).forEach(function (t) {
      var p = document.createElement("p");
      p.textContent = t.replace(/\{\{child\}\}/g, child.attributes.given_name);
      box.appendChild(p);
    });
    $("next").textContent = index === sequence.length - 1 ? "Finish" : "Next";
    $("next").hidden = false;
    $("next").focus();
  }

  function save(done) {
    var id = sequence[index];
    var frame = (study.attributes.structure.frames || {})[id] || {};
    expData[id] = { frameType: frame.kind || "DEFAULT", generatedProperties: {},
                    eventTimings: [{ eventType: "nextFrame", timestamp: new Date().toISOString() }] };
    var attrs = { exp_data: expData, sequence: sequence.slice(0, index + 1),
                  completed: done, completed_consent_frame: false };
    return api("PATCH", "/api/v1/responses/" + response.id + "/",
               { data: { type: "responses", id: response.id, attributes: attrs } });
  }

  function exit() {
    return api("GET", "/api/v1/responses/" + response.id + "/").then(function (doc) {
      var url;
      try { url = new URL(study.attributes.exit_url); } catch (e) { url = new URL("/", location.href); }
      url.searchParams.set("child", doc.data.attributes.hash_child_id || "");
      url.searchParams.set("response", response.id);
      window.location.assign(url.toString());
    });
  }

  $("next").addEventListener("click", function () {
    $("next").disabled = true;
    var last = index === sequence.length - 1;
    save(last).then(function () {
      $("next").disabled = false;
      if (last) return exit();
      index++;
      show();
    }).catch(function (e) {
      // As the real runner: "Could not save data", and the family may go on.
      $("next").disabled = false;
      fail("Could not save data: " + e.message);
    });
  });

  api("GET", "/api/v1/studies/" + studyId + "/").then(function (doc) {                // R1
    study = doc.data;
    document.title = study.attributes.name;
    return api("GET", "/api/v1/children/" + childId + "/");                            // R2
  }).then(function (doc) {
    child = doc.data;
    return api("POST", "/api/v1/responses/", { data: {                                  // R3
      attributes: { global_event_timings: [], exp_data: {}, sequence: [], completed: false,
                    completed_consent_frame: false, survey_consent: false, created_on: null,
                    is_preview: preview, hash_child_id: null, recording_method: "recordrtc" },
      relationships: { child: { data: { type: "children", id: childId } },
                       study: { data: { type: "studies", id: studyId } } },
      type: "responses" } });
  }).then(function (doc) {
    response = doc.data;
    var related = study.relationships.responses.links.related;                        // R4
    return api("GET", local(related) + "?page%5Bsize%5D=10&page=1&child=" + childId);
  }).then(function () {
    sequence = (study.attributes.structure.sequence || []).slice();
    if (!sequence.length) sequence = ["thanks"];
    document.body.setAttribute("data-response", response.id);
    show();
  }).catch(function (e) {
    fail("The study could not start: " + e.message);
  });
})();
