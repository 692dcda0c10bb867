// Runs on load: marks images that did not decode and writes, on the body element, the counts a
// headless browser checks (data-images-total, data-images-loaded, data-tables).
window.addEventListener("load", function () {
  var imgs = document.images, loaded = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { loaded++; }
    else if (imgs[i].parentNode) { imgs[i].parentNode.classList.add("broken"); }
  }
  var body = document.body;
  body.setAttribute("data-images-total", String(imgs.length));
  body.setAttribute("data-images-loaded", String(loaded));
  body.setAttribute("data-tables", String(document.getElementsByTagName("table").length));
});
