// Runs before the page paints: where the account has no saved theme, the browser's choice.
(function () {
  var root = document.documentElement;
  if (root.getAttribute("data-theme-source") !== "local") return;
  try {
    var saved = localStorage.getItem("r1chat.theme");
    if (saved === "light" || saved === "dark" || saved === "system") root.setAttribute("data-theme", saved);
  } catch (e) { /* storage blocked: keep the system theme */ }
})();
