// Progressive enhancement: a Copy button next to a just-created token.
// Everything works without it.
document.querySelectorAll("button.copy").forEach(function (btn) {
  var target = document.getElementById(btn.dataset.copy);
  if (!target || !navigator.clipboard) return;
  btn.hidden = false;
  btn.addEventListener("click", function () {
    navigator.clipboard.writeText(target.textContent).then(function () {
      btn.textContent = "Copied";
    });
  });
});
