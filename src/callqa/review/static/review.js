// callqa review: keyboard shortcuts and in-place answers on the call page (no libraries).
// space play/pause · j/k next/previous check · a agree · d disagree · x N/A · n next call
(function () {
  "use strict";
  var player = document.getElementById("player");
  var rows = [].slice.call(document.querySelectorAll("tr.rcheck"));
  var at = 0;

  function focusRow(i) {
    if (!rows.length) return;
    at = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("current", k === at); });
    rows[at].scrollIntoView({block: "nearest"});
  }

  // Answers go by fetch so the audio keeps playing; without JS the form posts and redirects.
  function send(form, answer) {
    var data = new FormData(form);
    data.set("answer", answer);
    return fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                               headers: {"X-Requested-With": "fetch"}})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (j) {
        var row = form.closest("tr");
        row.querySelectorAll(".answers button").forEach(function (b) {
          b.classList.toggle("chosen", b.value === j.answer);
        });
        var labels = {agree: "Agree", disagree: "Disagree", na: "N/A"};
        var now = row.querySelector("td.now");
        now.textContent = "";
        var s = document.createElement("span");
        s.className = "human " + j.answer;
        s.textContent = labels[j.answer];
        now.appendChild(s);
        row.dataset.saved = j.answer;
      });
  }

  rows.forEach(function (row, i) {
    var form = row.querySelector("form.answers");
    row.addEventListener("click", function () { focusRow(i); });
    form.addEventListener("submit", function (ev) {
      var answer = ev.submitter ? ev.submitter.value : null;
      if (!answer || !window.fetch) return;  // let the browser post it
      ev.preventDefault();
      send(form, answer).catch(function () { form.submit(); });
    });
  });

  function answer(value) {
    if (!rows.length) return;
    var form = rows[at].querySelector("form.answers");
    send(form, value).then(function () { focusRow(at + 1); });
  }

  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var next = document.getElementById("next-call");
    switch (ev.key) {
      case " ":
        if (!player) return;
        ev.preventDefault();
        if (player.paused) { var p = player.play(); if (p && p.catch) p.catch(function () {}); }
        else player.pause();
        break;
      case "j": focusRow(at + 1); break;
      case "k": focusRow(at - 1); break;
      case "a": answer("agree"); break;
      case "d": answer("disagree"); break;
      case "x": answer("na"); break;
      case "n": if (next) window.location.href = next.href; break;
      default: return;
    }
  });
  focusRow(0);
})();
