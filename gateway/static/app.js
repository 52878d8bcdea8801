/* The analysts' page: submit a video (URL or file), follow the stages, show the verdict, the overlay video, the
 * per-frame score chart (SVG), face thumbnails cut from the overlay video, the people in the video (several faces:
 * each with a thumbnail and verdict; selecting one shows their chart), the timings and the raw JSON.
 * Plain browser JavaScript, no library, no build step. Talks only to its own origin (and plays the overlay video
 * from wherever the gateway stored it). */
(function () {
  "use strict";

  var API = "/api/v1";
  var SVG_NS = "http://www.w3.org/2000/svg";

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    form: $("predict-form"), url: $("video-url"), urlHint: $("url-hint"), file: $("video-file"), drop: $("drop-zone"),
    fileChosen: $("file-chosen"), chooseText: $("choose-text"), fileName: $("file-name"), fileClear: $("file-clear"),
    frames: $("num-frames"), heatmap: $("heatmap"), submit: $("submit"), cancel: $("cancel"),
    apiKey: $("api-key"), apiKeyBox: $("api-key-box"),
    live: $("live"), serviceInfo: $("service-info"), serviceWarning: $("service-warning"),
    uploadLimit: $("upload-limit"), maxFrames: $("max-frames"),
    progressPanel: $("progress-panel"), progressBar: $("progress-bar"), stages: $("stages"), elapsed: $("elapsed"),
    errorPanel: $("error-panel"), errorTitle: $("error-title"), errorMessage: $("error-message"),
    errorDetail: $("error-detail"),
    result: $("result"), verdictBox: $("verdict-box"), verdict: $("verdict"), verdictDetail: $("verdict-detail"),
    warnings: $("result-warnings"), player: $("player"), playerNote: $("player-note"),
    timings: $("timings"), details: $("details"), jsonLink: $("json-link"), jsonDownload: $("json-download"),
    json: $("json"), chart: $("chart"), thumbs: $("thumbs"), thumbsNote: $("thumbs-note"),
    people: $("people"), peopleList: $("people-list"), peopleNote: $("people-note"), chartTitle: $("chart-title")
  };

  // The stages as the server lists them (gateway.services.prediction.stages, rendered into the page's list).
  var STAGE_ITEMS = Array.prototype.slice.call(els.stages.querySelectorAll("li[data-stage]"));
  var STAGES = STAGE_ITEMS.map(function (li) { return li.dataset.stage; });
  var FETCH_STAGE = STAGES[0]; // the video onto the server: sent from here, or downloaded there

  var limits = { maxUploadBytes: null, maxFrames: 128 };
  var current = null; // the request in flight: {xhr, events, timer, started, id}
  var shown = null; // the result on screen: {data, points, thumbs, blobUrl, thumbVideo}

  // --- small helpers ------------------------------------------------------------------------------------------

  function announce(text) {
    els.live.textContent = "";
    window.setTimeout(function () { els.live.textContent = text; }, 50);
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return "web-" + Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  function formatBytes(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(1) + " GB";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
    if (n >= 1e3) return Math.round(n / 1e3) + " kB";
    return n + " bytes";
  }

  function pct(x) { return Math.round(100 * x) + "%"; }

  function seconds(s) {
    if (s === null || s === undefined || isNaN(s)) return "–";
    return s < 10 ? s.toFixed(2) + " s" : s.toFixed(1) + " s";
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // --- the API key (optional; kept in sessionStorage, sent as X-API-Key) ---------------------------------------

  var KEY_STORAGE = "deepfake.apiKey";

  function apiKey() { return els.apiKey.value.trim(); }

  function keyHeaders() { return apiKey() ? { "X-API-Key": apiKey() } : {}; }

  function setupApiKey() {
    try { els.apiKey.value = window.sessionStorage.getItem(KEY_STORAGE) || ""; } catch (err) { /* storage off */ }
    if (apiKey()) els.apiKeyBox.open = true;
    els.apiKey.addEventListener("change", function () {
      try {
        if (apiKey()) window.sessionStorage.setItem(KEY_STORAGE, apiKey());
        else window.sessionStorage.removeItem(KEY_STORAGE);
      } catch (err) { /* storage off: the key lasts as long as the page */ }
      setupApiKey();
  loadInfo();
    });
  }

  // --- service info (defaults and limits) ---------------------------------------------------------------------

  function loadInfo() {
    fetch(API + "/info", { headers: keyHeaders() }).then(function (r) {
      if (r.status === 401) els.apiKeyBox.open = true;
      return r.ok ? r.json() : null;
    }).then(function (info) {
      if (!info) return;
      var d = info.defaults || {}, l = info.limits || {};
      if (l.max_num_frames) {
        limits.maxFrames = l.max_num_frames;
        els.frames.max = String(l.max_num_frames);
        els.maxFrames.textContent = String(l.max_num_frames);
      }
      if (d.num_frames && !els.frames.dataset.touched) els.frames.value = String(d.num_frames);
      if (typeof d.heatmap === "boolean" && !els.heatmap.dataset.touched) els.heatmap.checked = d.heatmap;
      if (l.max_upload_bytes) {
        limits.maxUploadBytes = l.max_upload_bytes;
        els.uploadLimit.textContent = ", up to " + formatBytes(l.max_upload_bytes);
      }
      if (info.model) {
        els.serviceInfo.textContent = "Model " + info.model.name + " " + info.model.version +
          " · decision threshold " + pct(info.model.threshold);
        els.serviceInfo.hidden = false;
      }
    }).catch(function () { /* the page works with its built-in defaults */ });

    fetch(API + "/health").then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    }).then(function (h) {
      if (h.status === 200) return;
      var failing = Object.keys(h.body.checks || {}).filter(function (k) { return !h.body.checks[k].ok; });
      els.serviceWarning.textContent = "The analysis service is not ready (" + (failing.join(", ") || "unknown") +
        "): predictions may fail until it is.";
      els.serviceWarning.hidden = false;
    }).catch(function () { /* shown when a prediction fails */ });
  }

  // --- the file input and drag and drop ------------------------------------------------------------------------

  function chosenFile() { return els.file.files && els.file.files.length ? els.file.files[0] : null; }

  function updateFileUi() {
    var file = chosenFile();
    els.drop.classList.toggle("has-file", !!file);
    els.fileChosen.hidden = !file;
    els.url.disabled = !!file;
    els.chooseText.textContent = file ? "Choose another file" : "Choose a file";
    els.fileName.textContent = file ? file.name + " (" + formatBytes(file.size) + ")" : "";
    els.urlHint.textContent = file
      ? "A file is chosen: remove it to analyse a URL instead."
      : "A public http(s) link to a video file. The gateway downloads it.";
  }

  els.file.addEventListener("change", updateFileUi);
  els.fileClear.addEventListener("click", function () {
    els.file.value = "";
    updateFileUi();
    els.file.focus();
  });
  els.frames.addEventListener("input", function () { els.frames.dataset.touched = "1"; });
  els.heatmap.addEventListener("change", function () { els.heatmap.dataset.touched = "1"; });

  ["dragenter", "dragover"].forEach(function (type) {
    els.drop.addEventListener(type, function (e) {
      e.preventDefault();
      els.drop.classList.add("dragging");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    els.drop.addEventListener(type, function () { els.drop.classList.remove("dragging"); });
  });
  els.drop.addEventListener("drop", function (e) {
    e.preventDefault();
    els.drop.classList.remove("dragging");
    takeDrop(e.dataTransfer);
  });
  // A drop anywhere else must not navigate away from the page (the browser's default for a dropped file).
  document.addEventListener("dragover", function (e) { e.preventDefault(); });
  document.addEventListener("drop", function (e) {
    e.preventDefault();
    takeDrop(e.dataTransfer);
  });

  function takeDrop(dt) {
    if (!dt) return;
    if (dt.files && dt.files.length) {
      els.file.files = dt.files;
      updateFileUi();
      announce("File chosen: " + dt.files[0].name);
      return;
    }
    var text = (dt.getData("text/uri-list") || dt.getData("text/plain") || "").split("\n")[0].trim();
    if (/^https?:\/\//i.test(text)) {
      els.file.value = "";
      updateFileUi();
      els.url.value = text;
      announce("URL pasted from the drop");
    }
  }

  // --- progress ------------------------------------------------------------------------------------------------

  function stageItem(name) { return els.stages.querySelector('[data-stage="' + name + '"]'); }

  function resetStages(isUpload, heatmap) {
    els.stages.dataset.seen = "";
    STAGES.forEach(function (name) {
      var li = stageItem(name);
      li.className = "";
      li.querySelector(".stage-note").textContent = "";
    });
    stageItem(FETCH_STAGE).querySelector(".stage-name").textContent =
      isUpload ? "Sending the video" : "Fetching the video";
    if (!heatmap) {
      stageItem("gradcam").classList.add("skipped");
      stageItem("gradcam").querySelector(".stage-note").textContent = "(off)";
    }
  }

  // Marks every stage before `name` done and `name` active; the bar follows the active stage.
  function setStage(name, fraction) {
    var index = STAGES.indexOf(name);
    if (index < 0) return;
    STAGES.forEach(function (s, i) {
      var li = stageItem(s);
      if (li.classList.contains("skipped")) return;
      li.classList.toggle("done", i < index);
      li.classList.toggle("active", i === index);
      if (i === index) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    });
    var value = (index + (fraction || 0)) / STAGES.length;
    els.progressBar.value = Math.round(100 * value);
    if (current && current.stage !== name) {
      current.stage = name;
      announce(stageItem(name).querySelector(".stage-name").textContent + "…");
    }
  }

  function startProgress(isUpload, heatmap) {
    resetStages(isUpload, heatmap);
    els.progressBar.removeAttribute("value"); // indeterminate until something is known
    els.progressPanel.hidden = false;
    var started = Date.now();
    current.timer = window.setInterval(function () {
      els.elapsed.textContent = Math.round((Date.now() - started) / 1000) + " s";
    }, 1000);
    els.elapsed.textContent = "0 s";
    setStage(FETCH_STAGE, 0);
    if (!isUpload) els.progressBar.removeAttribute("value"); // a download on the server: no percentage to show
  }

  function followStages(id) {
    if (!window.EventSource) return null;
    var source = new EventSource(API + "/progress/" + encodeURIComponent(id));
    source.addEventListener("stage", function (e) {
      var event;
      try { event = JSON.parse(e.data); } catch (err) { return; }
      els.stages.dataset.seen = ((els.stages.dataset.seen || "") + " " + event.stage).trim();
      if (event.stage === "done" || event.stage === "failed") {
        source.close();
        return;
      }
      if (current && current.id === id) {
        if (event.stage === "gradcam" && stageItem("gradcam").classList.contains("skipped")) return;
        setStage(event.stage, 0.3);
      }
    });
    source.onerror = function () {
      // The stream is optional. While the request runs, EventSource reconnects by itself (the stages seen so far
      // are sent again); once it is over, or the stream was refused, it is closed.
      if (source.readyState === EventSource.CLOSED || !current || current.id !== id) source.close();
    };
    return source;
  }

  function stopProgress() {
    if (!current) return;
    if (current.timer) window.clearInterval(current.timer);
    if (current.events) current.events.close();
    els.progressPanel.hidden = true;
  }

  // --- errors --------------------------------------------------------------------------------------------------

  var ERROR_TEXT = {
    url_refused: ["This URL was refused",
      "The gateway only fetches public http(s) addresses: not private, loopback or link-local ones, and no credentials in the URL."],
    download_failed: ["The video could not be downloaded", null],
    too_large: ["The video is too large", null],
    unsupported_video: ["This file could not be analysed as a video", "Try an MP4 (H.264), MOV, MKV, WebM or AVI file."],
    invalid_request: ["The request was not valid", null],
    overloaded: ["The service is busy", null],
    unauthorized: ["An API key is needed", "Enter a valid key under \u201cAPI key\u201d in the form."],
    rate_limited: ["Too many requests", null],
    triton_unavailable: ["The analysis service is unavailable", "The model server cannot be reached right now."],
    timeout: ["The analysis took too long", "Try fewer frames or a shorter video."],
    upstream_error: ["The analysis service failed", null],
    internal_error: ["Something went wrong in the gateway", null],
    not_found: ["Not found", null],
    network: ["The gateway could not be reached", "Check your connection; the page needs the gateway that served it."]
  };

  var STATUS_TYPES = {
    400: "url_refused", 401: "unauthorized", 413: "too_large", 422: "invalid_request", 424: "download_failed", 429: "overloaded",
    502: "upstream_error", 503: "triton_unavailable", 504: "timeout", 500: "internal_error"
  };

  function describeError(status, body, retryAfter) {
    var err = (body && body.error) || {};
    var type = err.type || STATUS_TYPES[status] || (status >= 500 ? "internal_error" : "invalid_request");
    var known = ERROR_TEXT[type] || ["The request failed", null];
    var message = err.message || ("The gateway answered HTTP " + status + ".");
    if (type === "download_failed" && err.remote_status) {
      message = "The server holding the video answered HTTP " + err.remote_status +
        (err.remote_status === 404 ? " (not found)" : "") + ". " + (err.message || "");
    }
    var hints = [];
    if (known[1]) hints.push(known[1]);
    if (retryAfter) hints.push("Try again in " + retryAfter + " s.");
    if (type === "too_large" && limits.maxUploadBytes) hints.push("The limit is " + formatBytes(limits.maxUploadBytes) + ".");
    if (body && body.request_id) hints.push("Request id: " + body.request_id + ".");
    if (status) hints.push("(HTTP " + status + ", " + type + ")");
    return { type: type, title: known[0], message: message.trim(), detail: hints.join(" ") };
  }

  function sentence(text) {
    text = String(text || "").trim();
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
  }

  function showError(info) {
    els.errorTitle.textContent = info.title;
    els.errorMessage.textContent = sentence(info.message);
    els.errorDetail.textContent = info.detail || "";
    els.errorPanel.dataset.errorType = info.type;
    els.errorPanel.hidden = false;
    els.errorPanel.scrollIntoView({ block: "nearest" });
  }

  function hideError() {
    els.errorPanel.hidden = true;
    delete els.errorPanel.dataset.errorType;
  }

  // --- submitting ----------------------------------------------------------------------------------------------

  els.form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (current) return;
    hideError();
    var file = chosenFile();
    var url = els.url.value.trim();
    var frames = parseInt(els.frames.value, 10);
    els.url.removeAttribute("aria-invalid");
    els.frames.removeAttribute("aria-invalid");
    if (!file && !url) {
      els.url.setAttribute("aria-invalid", "true");
      showError({ type: "form", title: "Nothing to analyse", message: "Paste a video URL or choose a video file.", detail: "" });
      els.url.focus();
      return;
    }
    if (!file && !/^https?:\/\//i.test(url)) {
      els.url.setAttribute("aria-invalid", "true");
      showError({ type: "form", title: "Not a web address", message: "The URL must start with http:// or https://.", detail: "" });
      els.url.focus();
      return;
    }
    if (!(frames >= 1 && frames <= limits.maxFrames)) {
      els.frames.setAttribute("aria-invalid", "true");
      showError({ type: "form", title: "Frames out of range", message: "Choose between 1 and " + limits.maxFrames + " frames.", detail: "" });
      els.frames.focus();
      return;
    }
    if (file && limits.maxUploadBytes && file.size > limits.maxUploadBytes) {
      showError(describeError(413, { error: { type: "too_large", message: "The file is " + formatBytes(file.size) + "." } }));
      return;
    }
    submit(file, url, frames, els.heatmap.checked);
  });

  els.cancel.addEventListener("click", function () {
    if (current && current.xhr) current.xhr.abort();
  });

  function submit(file, url, frames, heatmap) {
    var id = randomId();
    var xhr = new XMLHttpRequest();
    current = { id: id, xhr: xhr, stage: null };
    clearResult();
    els.result.hidden = true;
    els.submit.disabled = true;
    els.submit.textContent = "Analysing…";
    els.cancel.hidden = false;
    startProgress(!!file, heatmap);
    current.events = followStages(id);

    xhr.open("POST", file ? API + "/predict/upload" : API + "/predict");
    xhr.setRequestHeader("X-Request-ID", id);
    xhr.setRequestHeader("Accept", "application/json");
    if (apiKey()) xhr.setRequestHeader("X-API-Key", apiKey());
    if (file) {
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable || !current || current.id !== id) return;
        var f = e.loaded / e.total;
        stageItem(FETCH_STAGE).querySelector(".stage-note").textContent = pct(f) + " of " + formatBytes(e.total);
        setStage(FETCH_STAGE, f * 0.99);
      });
    }
    xhr.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      finish();
      if (xhr.status === 200 && body && body.predicted_class) {
        showResult(body, xhr.responseText);
      } else {
        var info = describeError(xhr.status, body, xhr.getResponseHeader("Retry-After"));
        if (xhr.status === 401) els.apiKeyBox.open = true;
        showError(info);
        announce(info.title + ": " + info.message);
      }
    });
    xhr.addEventListener("error", function () {
      finish();
      var info = describeError(0, { error: { type: "network", message: "The connection to the gateway failed." } });
      showError(info);
      announce(info.title);
    });
    xhr.addEventListener("abort", function () {
      finish();
      announce("Cancelled");
    });

    if (file) {
      var data = new FormData();
      data.append("num_frames", String(frames));
      data.append("heatmap", heatmap ? "true" : "false");
      data.append("file", file, file.name);
      xhr.send(data);
    } else {
      xhr.setRequestHeader("Content-Type", "application/json");
      xhr.send(JSON.stringify({ url: url, num_frames: frames, heatmap: heatmap }));
    }
  }

  function finish() {
    stopProgress();
    current = null;
    els.submit.disabled = false;
    els.submit.textContent = "Analyse video";
    els.cancel.hidden = true;
  }

  // --- the result ----------------------------------------------------------------------------------------------

  function verdictText(data) {
    if (window.Provenance && window.Provenance.verdictText(data)) return window.Provenance.verdictText(data);
    if (data.predicted_class === "NO_FACE") return "No face found";
    var c = Math.round(data.confidence);
    return (data.predicted_class === "FAKE" ? "Likely manipulated, " : "Likely authentic, ") + c + "%";
  }

  function clearResult() {
    if (!shown) return;
    if (shown.blobUrl) URL.revokeObjectURL(shown.blobUrl);
    if (shown.thumbVideo) {
      shown.thumbVideo.removeAttribute("src");
      shown.thumbVideo.load();
    }
    els.player.pause();
    els.player.removeAttribute("src");
    els.player.load();
    shown = null;
  }

  function showResult(data, raw) {
    clearResult();
    shown = { data: data, points: [], thumbs: [] };
    var kind = { FAKE: "fake", REAL: "real", NO_FACE: "noface" }[data.predicted_class] || "noface";
    els.verdictBox.className = "card verdict " + kind;
    els.verdictBox.dataset.predictedClass = data.predicted_class;
    els.verdict.textContent = verdictText(data);
    var frames = data.frames_analyzed, faces = data.faces_detected;
    var countText = frames + " frame" + (frames === 1 ? "" : "s") + " analysed, a face in " + faces + ".";
    if (window.Provenance) window.Provenance.render(data); // the content credentials panel
    if (data.verdict_reason === "content_credentials") {  // the detector's own result, still shown
      els.verdictDetail.textContent = window.Provenance.detectorText(data) + " " + countText;
    } else if (data.predicted_class === "NO_FACE") {
      els.verdictDetail.textContent = "No face was detected in the analysed frames, so the model gives no verdict. " +
        countText + " Try more frames, or a video where a face is clearly visible.";
    } else {
      els.verdictDetail.textContent = "Probability that the face is manipulated: " + pct(data.probability_fake) +
        " (" + (data.predicted_class === "FAKE" ? "at or above" : "below") + " the " + pct(data.threshold) +
        " threshold). " + countText;
    }

    var warnings = (data.errors || []).map(function (e) { return e.stage + ": " + e.message; });
    if (!data.output_url) warnings.unshift("The overlay video could not be stored, so it cannot be shown.");
    els.warnings.textContent = "";
    if (warnings.length) {
      var ul = el("ul");
      warnings.forEach(function (w) { ul.appendChild(el("li", null, w)); });
      els.warnings.appendChild(el("strong", null, "Part of the result is missing"));
      els.warnings.appendChild(ul);
    }
    els.warnings.hidden = !warnings.length;

    if (data.output_url) {
      els.player.hidden = false;
      els.player.src = data.output_url;
      els.playerNote.textContent = data.heatmap
        ? "Face box coloured by each frame's score (green authentic, red manipulated); the heatmap shows where the model looked."
        : "Face box coloured by each frame's score: green authentic, red manipulated.";
    } else {
      els.player.hidden = true;
      els.playerNote.textContent = "No overlay video.";
    }

    renderTimings(data);
    renderDetails(data);

    var pretty = JSON.stringify(JSON.parse(raw), null, 2);
    els.json.textContent = pretty;
    shown.blobUrl = URL.createObjectURL(new Blob([pretty], { type: "application/json" }));
    els.jsonLink.href = shown.blobUrl;
    els.jsonDownload.href = shown.blobUrl;
    els.jsonDownload.setAttribute("download", "prediction-" + data.request_id + ".json");

    els.result.hidden = false;
    var peopleJobs = renderPeople(data);
    renderChart();
    renderThumbs(data, peopleJobs);
    els.verdict.focus();
    announce("Result: " + verdictText(data));
  }

  function renderTimings(data) {
    var body = els.timings.tBodies[0];
    body.textContent = "";
    var t = data.timings || {};
    var rows = STAGE_ITEMS.filter(function (li) { return li.dataset.timingLabel; }).map(function (li) {
      return [li.dataset.stage, li.dataset.timingLabel];
    });
    var total = parseFloat(data.execution_time) || 0;
    var max = Math.max.apply(null, rows.map(function (r) { return t[r[0]] || 0; }).concat([total, 1e-9]));
    rows.forEach(function (r) {
      var tr = el("tr");
      var th = el("th", { scope: "row" }, r[1]);
      var bar = el("span", { class: "bar", "aria-hidden": "true" });
      bar.style.width = Math.max(1, Math.round(100 * (t[r[0]] || 0) / max)) + "%";
      th.appendChild(bar);
      tr.appendChild(th);
      tr.appendChild(el("td", null, seconds(t[r[0]] || 0)));
      body.appendChild(tr);
    });
    var tr = el("tr", { class: "total" });
    tr.appendChild(el("th", { scope: "row" }, "Total"));
    tr.appendChild(el("td", null, seconds(total)));
    body.appendChild(tr);
  }

  function renderDetails(data) {
    els.details.textContent = "";
    var v = data.video;
    var items = [
      ["Model", data.model ? data.model.name + " " + data.model.version : "–"],
      ["Video", v ? v.width + "×" + v.height + ", " + v.fps + " fps, " + seconds(v.frames / (v.fps || 1)) : "–"],
      ["Heatmap", data.heatmap ? "yes" : "no"],
      ["Request id", data.request_id]
    ];
    items.forEach(function (it) {
      els.details.appendChild(el("dt", null, it[0]));
      els.details.appendChild(el("dd", null, it[1]));
    });
  }

  // --- seeking -------------------------------------------------------------------------------------------------

  function fps() { return (shown && shown.data.video && shown.data.video.fps) || 25; }

  function seekTo(timestamp) {
    if (!shown || !shown.data.output_url) return;
    // The middle of the frame: lands on that frame even where the encoder rounded its timestamp.
    var t = timestamp + 0.5 / fps();
    els.player.pause();
    if (els.player.readyState >= 1) {
      els.player.currentTime = t;
    } else {
      els.player.addEventListener("loadedmetadata", function once() {
        els.player.removeEventListener("loadedmetadata", once);
        els.player.currentTime = t;
      });
    }
    updatePlayhead(t);
  }

  function nearestFrame(t) {
    var frames = shown ? chartFrames() : [];
    var best = -1, bestDist = Infinity;
    frames.forEach(function (f, i) {
      var d = Math.abs(f.timestamp + 0.5 / fps() - t);
      if (d < bestDist) { best = i; bestDist = d; }
    });
    return best;
  }

  function updatePlayhead(t) {
    if (!shown) return;
    if (shown.playhead && shown.xScale) {
      var x = shown.xScale(Math.min(Math.max(t, 0), shown.duration));
      shown.playhead.setAttribute("x1", x);
      shown.playhead.setAttribute("x2", x);
    }
    var k = nearestFrame(t);
    shown.points.forEach(function (p, i) { p.classList.toggle("current", i === k); });
    var j = nearestThumb(t);
    shown.thumbs.forEach(function (b, i) { b.classList.toggle("current", i === j); });
  }

  function nearestThumb(t) {
    var frames = shown ? shown.data.frame_scores || [] : [];
    var best = -1, bestDist = Infinity;
    frames.forEach(function (f, i) {
      var d = Math.abs(f.timestamp + 0.5 / fps() - t);
      if (d < bestDist) { best = i; bestDist = d; }
    });
    return best;
  }

  els.player.addEventListener("timeupdate", function () { updatePlayhead(els.player.currentTime); });
  els.player.addEventListener("seeked", function () { updatePlayhead(els.player.currentTime); });

  // --- the chart (SVG) -----------------------------------------------------------------------------------------

  function niceStep(span, target) {
    var raw = span / Math.max(target, 1);
    var mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * mag >= raw) return steps[i] * mag;
    return 10 * mag;
  }

  // The chart's frames: the selected person's (only the frames they are in), else the video's (the deciding face's).
  function chartFrames() {
    var data = shown.data;
    var face = (data.faces || []).filter(function (f) { return f.track_id === shown.face; })[0];
    return face && (data.faces || []).length > 1 ? face.frames : data.frame_scores || [];
  }

  function renderChart() {
    if (!shown) return;
    var data = shown.data;
    var frames = chartFrames();
    var width = Math.max(280, Math.round(els.chart.clientWidth || 600));
    var narrow = width < 480;
    var height = narrow ? 190 : 230;
    var m = { left: 44, right: 14, top: 14, bottom: 34 };
    var plotW = width - m.left - m.right, plotH = height - m.top - m.bottom;
    var v = data.video;
    var lastTs = frames.length ? frames[frames.length - 1].timestamp : 0;
    var duration = v && v.fps ? v.frames / v.fps : lastTs + 0.04;
    duration = Math.max(duration, lastTs + 1 / fps(), 1e-3);
    var xScale = function (t) { return m.left + plotW * (t / duration); };
    var yScale = function (s) { return m.top + plotH * (1 - s); };
    shown.xScale = xScale;
    shown.duration = duration;

    var root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "group",
      "aria-label": "Manipulation probability of " + frames.length + " analysed frames along " + seconds(duration) +
        " of video; the threshold is " + pct(data.threshold)
    });
    var thr = data.threshold;
    root.appendChild(svg("rect", { class: "band-fake", x: m.left, y: yScale(1), width: plotW, height: yScale(thr) - yScale(1) }));
    root.appendChild(svg("rect", { class: "band-real", x: m.left, y: yScale(thr), width: plotW, height: yScale(0) - yScale(thr) }));

    var grid = svg("g", { class: "grid", "aria-hidden": "true" });
    [0, 0.25, 0.5, 0.75, 1].forEach(function (s) {
      grid.appendChild(svg("line", { x1: m.left, x2: m.left + plotW, y1: yScale(s), y2: yScale(s), "stroke-opacity": s % 0.5 ? 0.5 : 1 }));
      grid.appendChild(svg("text", { x: m.left - 6, y: yScale(s) + 4, "text-anchor": "end" }, pct(s)));
    });
    root.appendChild(grid);

    var axis = svg("g", { class: "axis", "aria-hidden": "true" });
    axis.appendChild(svg("line", { x1: m.left, x2: m.left + plotW, y1: yScale(0), y2: yScale(0) }));
    var step = niceStep(duration, narrow ? 4 : 8);
    for (var t = 0; t <= duration + 1e-9; t += step) {
      var x = xScale(t);
      axis.appendChild(svg("line", { x1: x, x2: x, y1: yScale(0), y2: yScale(0) + 5 }));
      var label = step < 1 ? t.toFixed(step < 0.1 ? 2 : 1) : String(Math.round(t));
      axis.appendChild(svg("text", { x: x, y: yScale(0) + 18, "text-anchor": "middle" }, label + " s"));
    }
    root.appendChild(axis);

    root.appendChild(svg("line", { class: "threshold", x1: m.left, x2: m.left + plotW, y1: yScale(thr), y2: yScale(thr), "aria-hidden": "true" }));
    root.appendChild(svg("text", { class: "threshold-label", x: m.left + plotW - 4, y: yScale(thr) - 5, "text-anchor": "end", "aria-hidden": "true" }, "threshold " + pct(thr)));

    // The line through consecutive frames with a face (broken where a frame has none).
    var d = "", pen = false;
    frames.forEach(function (f) {
      if (f.score === null || f.score === undefined) { pen = false; return; }
      d += (pen ? " L " : " M ") + xScale(f.timestamp).toFixed(1) + " " + yScale(f.score).toFixed(1);
      pen = true;
    });
    if (d) root.appendChild(svg("path", { class: "series", d: d.trim(), "aria-hidden": "true" }));

    var playhead = svg("line", { class: "playhead", x1: m.left, x2: m.left, y1: m.top, y2: yScale(0), "aria-hidden": "true" });
    root.appendChild(playhead);
    shown.playhead = playhead;

    var points = svg("g", { class: "points" });
    shown.points = [];
    var r = narrow ? 5 : 6;
    frames.forEach(function (f, i) {
      var hasScore = f.score !== null && f.score !== undefined;
      var cls = !hasScore ? "noface" : f.score >= thr ? "fake" : "real";
      var label = "Frame " + f.frame_index + " at " + seconds(f.timestamp) + ": " +
        (hasScore ? pct(f.score) + " manipulated" : "no face");
      var g = svg("g", {
        class: "pt " + cls, tabindex: i === 0 ? 0 : -1, role: "button", "aria-label": label,
        "data-frame-index": f.frame_index, "data-timestamp": f.timestamp, "data-i": i
      });
      var cx = xScale(f.timestamp), cy = yScale(hasScore ? f.score : 0);
      g.appendChild(svg("title", null, label));
      g.appendChild(svg("circle", { class: "hit", cx: cx, cy: cy, r: Math.max(12, r + 6) }));
      g.appendChild(svg("circle", { class: "dot", cx: cx, cy: cy, r: r }));
      g.addEventListener("click", function () { seekTo(f.timestamp); });
      g.addEventListener("focus", function () {
        shown.points.forEach(function (p) { p.setAttribute("tabindex", p === g ? "0" : "-1"); });
      });
      g.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          seekTo(f.timestamp);
        } else if (e.key === "ArrowRight" || e.key === "ArrowLeft" || e.key === "Home" || e.key === "End") {
          e.preventDefault();
          var n = shown.points.length;
          var j = e.key === "Home" ? 0 : e.key === "End" ? n - 1 : i + (e.key === "ArrowRight" ? 1 : -1);
          if (j >= 0 && j < n) {
            shown.points.forEach(function (p, q) { p.setAttribute("tabindex", q === j ? "0" : "-1"); });
            shown.points[j].focus();
          }
        }
      });
      points.appendChild(g);
      shown.points.push(g);
    });
    root.appendChild(points);
    if (!frames.length) {
      root.appendChild(svg("text", { class: "empty", x: m.left + plotW / 2, y: m.top + plotH / 2, "text-anchor": "middle" }, "No frames"));
    }

    els.chart.textContent = "";
    els.chart.appendChild(root);
    updatePlayhead(els.player.currentTime || 0);
  }

  // Redrawn when its box changes width (rotation, window size), so text and points keep their size.
  var resizeFrame = 0;
  function chartResized() {
    if (resizeFrame) return;
    resizeFrame = window.requestAnimationFrame(function () {
      resizeFrame = 0;
      if (!shown || els.result.hidden) return;
      var drawn = els.chart.querySelector("svg");
      var width = Math.max(280, Math.round(els.chart.clientWidth || 600));
      if (!drawn || Math.abs(Number(drawn.getAttribute("width")) - width) > 1) renderChart();
    });
  }
  if (window.ResizeObserver) new ResizeObserver(chartResized).observe(els.chart);
  else window.addEventListener("resize", chartResized);

  // --- thumbnails, cut from the overlay video at each analysed frame -------------------------------------------

  // --- the people (issue 14): one entry per analysed face, shown when there is more than one ----------------

  function personName(face) { return "Person " + (face.track_id + 1); }

  function personVerdict(face) {
    return (face.predicted_class === "FAKE" ? "likely manipulated, " : "likely authentic, ") + Math.round(face.confidence) + "%";
  }

  function selectPerson(trackId) {
    shown.face = trackId;
    var face = (shown.data.faces || []).filter(function (f) { return f.track_id === trackId; })[0];
    els.peopleList.querySelectorAll("button.person").forEach(function (b) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.trackId) === trackId));
    });
    els.chartTitle.textContent = face && shown.data.faces.length > 1
      ? "Score of each analysed frame: " + personName(face)
      : "Score of each analysed frame";
    renderChart();
  }

  function renderPeople(data) {
    var faces = data.faces || [];
    els.peopleList.textContent = "";
    shown.face = data.deciding_face;
    els.chartTitle.textContent = "Score of each analysed frame";
    var notAnalysed = data.faces_not_analysed || 0;
    els.people.hidden = faces.length < 2 && !notAnalysed;  // one face: the page looks as it always did
    if (els.people.hidden) return [];
    els.peopleNote.textContent = "The video's verdict is its most suspicious person's. Select a person to show their scores." +
      (notAnalysed ? " " + notAnalysed + " more " + (notAnalysed === 1 ? "person was" : "people were") +
        " not analysed (the service analyses the " + faces.length + " most prominent faces)." : "");
    var jobs = [];
    faces.forEach(function (face) {
      var kind = face.predicted_class === "FAKE" ? "fake" : "real";
      var li = el("li");
      var button = el("button", {
        type: "button", class: "person " + kind, "data-track-id": face.track_id,
        "aria-pressed": String(face.track_id === data.deciding_face),
        "aria-label": personName(face) + ": " + personVerdict(face) + (face.deciding ? ", decided the verdict" : "")
      });
      var canvas = el("canvas", { width: 96, height: 96, "aria-hidden": "true" });
      button.appendChild(canvas);
      var text = el("span", { class: "person-text", "aria-hidden": "true" });
      text.appendChild(el("strong", null, personName(face)));
      text.appendChild(el("span", { class: "person-verdict" }, personVerdict(face)));
      text.appendChild(el("span", { class: "person-seen" }, seconds(face.first_seen) + " – " + seconds(face.last_seen) +
        (face.deciding ? " · decided the verdict" : "")));
      button.appendChild(text);
      button.addEventListener("click", function () { selectPerson(face.track_id); });
      li.appendChild(button);
      els.peopleList.appendChild(li);
      var middle = face.frames[Math.floor(face.frames.length / 2)];
      if (middle && data.output_url) jobs.push({ frame: middle, canvas: canvas });
    });
    return jobs;
  }

  function renderThumbs(data, extraJobs) {
    els.thumbs.textContent = "";
    shown.thumbs = [];
    var frames = data.frame_scores || [];
    var withFace = frames.filter(function (f) { return f.box; }).length;
    if (!data.output_url) {
      els.thumbsNote.textContent = "No thumbnails: the overlay video was not stored.";
    } else if (!withFace) {
      els.thumbsNote.textContent = "No face in the analysed frames.";
    } else {
      els.thumbsNote.textContent = "Cut from the overlay video. Select one to show its frame.";
    }
    var jobs = [];
    frames.forEach(function (f) {
      var hasScore = f.score !== null && f.score !== undefined;
      var cls = !hasScore ? "noface" : f.score >= data.threshold ? "fake" : "real";
      var li = el("li");
      var button = el("button", {
        type: "button", class: "thumb " + cls, "data-frame-index": f.frame_index,
        "aria-label": "Show frame " + f.frame_index + " at " + seconds(f.timestamp) +
          (hasScore ? ", " + pct(f.score) + " manipulated" : ", no face")
      });
      var picture;
      if (f.box && data.output_url) {
        picture = el("canvas", { width: 160, height: 160, "aria-hidden": "true" });
        jobs.push({ frame: f, canvas: picture });
      } else {
        picture = el("span", { class: "noface-box", "aria-hidden": "true" }, f.box ? "…" : "no face");
      }
      button.appendChild(picture);
      var caption = el("span", { class: "thumb-caption", "aria-hidden": "true" });
      caption.appendChild(el("span", { class: "thumb-score" }, hasScore ? pct(f.score) : "–"));
      caption.appendChild(document.createTextNode(" · " + seconds(f.timestamp)));
      button.appendChild(caption);
      button.addEventListener("click", function () { seekTo(f.timestamp); });
      li.appendChild(button);
      els.thumbs.appendChild(li);
      shown.thumbs.push(button);
    });
    jobs = (extraJobs || []).concat(jobs);
    if (jobs.length) cutThumbnails(data, jobs);
  }

  // A second, hidden video element seeks to each analysed frame and draws the face (with a margin) on a
  // canvas. Drawing a cross-origin video without CORS is allowed (it only taints the canvas, never read back).
  function cutThumbnails(data, jobs) {
    var video = document.createElement("video");
    video.muted = true;
    video.preload = "auto";
    video.playsInline = true;
    shown.thumbVideo = video;
    var owner = shown;
    var k = 0;

    function next() {
      if (shown !== owner) return; // a newer result replaced this one
      if (k >= jobs.length) {
        video.removeAttribute("src");
        video.load();
        owner.thumbVideo = null;
        els.thumbs.dataset.ready = "true";
        return;
      }
      var job = jobs[k++];
      var done = false;
      var timeout = window.setTimeout(function () { finishOne(false); }, 4000);
      function finishOne(ok) {
        if (done) return;
        done = true;
        window.clearTimeout(timeout);
        video.removeEventListener("seeked", onSeeked);
        if (ok) drawFace(video, data, job);
        next();
      }
      function onSeeked() { finishOne(true); }
      video.addEventListener("seeked", onSeeked);
      video.currentTime = job.frame.timestamp + 0.5 / (data.video && data.video.fps ? data.video.fps : 25);
    }

    video.addEventListener("loadeddata", function start() {
      video.removeEventListener("loadeddata", start);
      next();
    });
    video.addEventListener("error", function () {
      if (shown === owner) els.thumbsNote.textContent = "The thumbnails could not be cut from the overlay video.";
    });
    els.thumbs.dataset.ready = "false";
    video.src = data.output_url;
  }

  function drawFace(video, data, job) {
    var vw = video.videoWidth, vh = video.videoHeight;
    if (!vw || !vh) return;
    var src = data.video || { width: vw, height: vh };
    var sx = vw / (src.width || vw), sy = vh / (src.height || vh);
    var b = job.frame.box;
    var x1 = b[0] * sx, y1 = b[1] * sy, x2 = b[2] * sx, y2 = b[3] * sy;
    var side = Math.min(Math.max(x2 - x1, y2 - y1) * 1.35, vw, vh);
    var cx = (x1 + x2) / 2, cy = (y1 + y2) / 2;
    var left = Math.min(Math.max(cx - side / 2, 0), vw - side);
    var top = Math.min(Math.max(cy - side / 2, 0), vh - side);
    var ctx = job.canvas.getContext("2d");
    ctx.drawImage(video, left, top, side, side, 0, 0, job.canvas.width, job.canvas.height);
    job.canvas.dataset.drawn = "true";
  }

  setupApiKey();
  loadInfo();
  updateFileUi();
})();
