(function () {
  "use strict";
  var form = document.getElementById("filters");
  var all = Array.prototype.slice.call(document.querySelectorAll("details.scenario"));
  function apply() {
    var item = form.querySelector("select[name=checklist]").value;
    var wanted = {};
    Array.prototype.forEach.call(form.querySelectorAll("input[name=outcome]"), function (box) {
      wanted[box.value] = box.checked;
    });
    var shown = 0;
    all.forEach(function (d) {
      var ok = (item === "all" || d.dataset.item === item) && wanted[d.dataset.outcome] === true;
      d.hidden = !ok;
      if (ok) { shown += 1; }
    });
    document.getElementById("shown").textContent = String(shown);
  }
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  document.getElementById("expand").addEventListener("click", function () {
    all.forEach(function (d) { if (!d.hidden) { d.open = true; } });
  });
  document.getElementById("collapse").addEventListener("click", function () {
    all.forEach(function (d) { d.open = false; });
  });
  var openedForPrint = [];
  window.addEventListener("beforeprint", function () {
    all.forEach(function (d) { if (!d.open && !d.hidden) { d.open = true; openedForPrint.push(d); } });
  });
  window.addEventListener("afterprint", function () {
    openedForPrint.forEach(function (d) { d.open = false; });
    openedForPrint = [];
  });
  apply();
}());
