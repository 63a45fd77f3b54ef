// Progressive enhancement: Copy buttons next to a just-created token and
// its settings. Everything works without them.
document.querySelectorAll("button.copy").forEach(function (btn) {
  var target = document.getElementById(btn.dataset.copy);
  if (!target || !navigator.clipboard) return;
  var label = btn.textContent;
  btn.hidden = false;
  btn.addEventListener("click", function () {
    navigator.clipboard.writeText(target.textContent.trim()).then(function () {
      btn.textContent = "Copied";
      setTimeout(function () { btn.textContent = label; }, 2000);
    }, function () {
      btn.textContent = "Select and copy by hand";
    });
  });
});
