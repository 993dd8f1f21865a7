// Keyboard shortcuts of the rating page: 1-5 score the highlighted criterion and move on, arrows move,
// Enter saves, Space pauses, Backspace goes back. Keys typed into the comment box are left alone.
(function () {
  "use strict";
  var form = document.getElementById("rating");
  if (!form) { return; }
  var rows = Array.prototype.slice.call(form.querySelectorAll(".criterion"));
  var video = document.getElementById("clip");
  var active = 0;

  function firstUnscored() {
    for (var i = 0; i < rows.length; i++) {
      if (!rows[i].querySelector("input:checked")) { return i; }
    }
    return rows.length - 1;
  }
  function highlight(index) {
    active = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach(function (row, i) { row.classList.toggle("active", i === active); });
    rows[active].scrollIntoView({block: "nearest"});
  }
  function score(value) {
    var input = rows[active].querySelector('input[value="' + value + '"]');
    if (!input) { return; }
    input.checked = true;
    if (active < rows.length - 1) { highlight(active + 1); }
  }
  rows.forEach(function (row, i) {
    row.addEventListener("click", function () { highlight(i); });
    row.addEventListener("change", function () { if (i === active && i < rows.length - 1) { highlight(i + 1); } });
  });
  form.addEventListener("submit", function (event) {
    var missing = firstUnscored();
    if (!rows[missing].querySelector("input:checked")) {
      event.preventDefault();
      highlight(missing);
    }
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" && target.type === "text")) { return; }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (/^[0-9]$/.test(event.key)) { score(event.key); event.preventDefault(); }
    else if (event.key === "ArrowDown") { highlight(active + 1); event.preventDefault(); }
    else if (event.key === "ArrowUp") { highlight(active - 1); event.preventDefault(); }
    else if (event.key === "Enter") { event.preventDefault(); form.requestSubmit(); }
    else if (event.key === " " && video) { event.preventDefault(); if (video.paused) { video.play(); } else { video.pause(); } }
    else if (event.key === "Backspace") {
      var previous = document.getElementById("previous");
      if (previous) { event.preventDefault(); window.location.href = previous.href; }
    }
  });
  highlight(firstUnscored());
}());
