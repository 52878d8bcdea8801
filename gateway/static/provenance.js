/* The content credentials (C2PA) panel of a result, shown above the detector's score.
   window.Provenance.render(data) fills #provenance; window.Provenance.verdictText(data) is the headline when the
   credentials decided the verdict (null otherwise). The overlay video carries no credentials: this panel describes
   the analysed (original) video. */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };

  function row(dl, term, value, key) {
    var dt = document.createElement("dt");
    dt.textContent = term;
    var dd = document.createElement("dd");
    dd.textContent = value;
    dd.dataset.field = key;
    dl.appendChild(dt);
    dl.appendChild(dd);
  }

  function status(p) {
    if (!p.present) return { text: "No content credentials in this video", kind: "none" };
    if (!p.valid) return { text: "Content credentials present but NOT valid: not used for the verdict", kind: "invalid" };
    if (!p.trusted) return { text: "Valid content credentials from an untrusted signer: not used for the verdict", kind: "untrusted" };
    return { text: "Valid content credentials from a trusted signer", kind: "trusted" };
  }

  function render(data) {
    var box = $("provenance"), dl = $("provenance-fields"), title = $("provenance-status");
    var p = data.provenance || { present: false };
    var s = status(p);
    box.className = "card provenance " + s.kind;
    box.dataset.present = String(!!p.present);
    box.dataset.valid = String(!!p.valid);
    box.dataset.trusted = String(!!p.trusted);
    box.dataset.aiGenerated = String(!!p.ai_generated);
    title.textContent = s.text;
    dl.textContent = "";
    dl.hidden = !p.present;
    if (p.present) {
      row(dl, "Signed by", (p.signer || "unknown") + (p.issuer ? " (" + p.issuer + ")" : ""), "signer");
      row(dl, "Tool", p.claim_generator || "unknown", "tool");
      row(dl, "When", p.created || "not stated", "created");
      row(dl, "AI-generated", p.ai_generated ? "Yes: declared by the credentials" : "Not declared", "ai");
      row(dl, "Valid", p.valid ? "Yes" : "No" + (p.validation_errors && p.validation_errors.length
        ? " (" + p.validation_errors.join(", ") + ")" : ""), "valid");
      row(dl, "Trusted signer", p.trusted ? "Yes" : "No", "trusted");
      if (p.ingredients_count) row(dl, "Ingredients", String(p.ingredients_count), "ingredients");
    }
    $("provenance-note").hidden = !p.present;
  }

  function verdictText(data) {
    if (data.verdict_reason !== "content_credentials") return null;
    return "AI-generated, declared by trusted content credentials";
  }

  function detectorText(data) {
    if (data.verdict_reason !== "content_credentials") return null;
    var own = { FAKE: "manipulated", REAL: "authentic", NO_FACE: "no face found" }[data.detector_class] || "unknown";
    return "The detector's own result: " + own + ", probability that the face is manipulated " +
      Math.round(100 * data.probability_fake) + "% (threshold " + Math.round(100 * data.threshold) + "%).";
  }

  window.Provenance = { render: render, verdictText: verdictText, detectorText: detectorText };
})();
