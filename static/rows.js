// "Add another" rows without a round trip. Without JavaScript the same buttons post the form
// and the server adds the row, so this is only a convenience.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[name=add_row]");
  if (!button) return;
  var fieldset = button.closest("fieldset");
  var rows = fieldset.querySelectorAll(".row-item");
  var last = rows[rows.length - 1];
  if (!last) return;
  event.preventDefault();
  var copy = last.cloneNode(true);
  var index = rows.length;
  copy.querySelectorAll("input, textarea, label, p, ul").forEach(function (el) {
    ["id", "name", "for", "aria-describedby"].forEach(function (attr) {
      var value = el.getAttribute(attr);
      if (value) el.setAttribute(attr, value.replace(/-(\d+)(?=-|$)/, "-" + index));
    });
    if (el.tagName === "INPUT" || el.tagName === "TEXTAREA") { el.value = ""; el.removeAttribute("aria-invalid"); }
    if (el.classList.contains("field-errors")) el.remove();
  });
  last.after(copy);
  var first = copy.querySelector("input, textarea");
  if (first) first.focus();
});
