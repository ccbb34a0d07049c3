/* The e-bill widget for apps (docs/rendering.md). Include it where the card
 * should appear:
 *
 *   <script src="https://<engine>/widget.js" data-bill-code="44060119"
 *           data-bill-no="0010535766" data-check-code="a1b2c3"></script>
 *
 * It inserts an iframe of /widget/bill/<code>/<no>?c=<check> from the engine's
 * own origin (so the including page reads nothing of the bill) and sizes it to
 * the card, which posts its height; messages from anywhere else are ignored.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var origin = new URL(script.src, document.baseURI).origin;
  var d = script.dataset;
  var frame = document.createElement("iframe");
  frame.className = "ebill-widget";
  frame.title = "电子票据";
  frame.src = origin + "/widget/bill/" + encodeURIComponent(d.billCode || "") + "/" +
    encodeURIComponent(d.billNo || "") + "?c=" + encodeURIComponent(d.checkCode || "");
  frame.style.cssText = "display:block;width:100%;max-width:480px;border:0;height:260px;";
  frame.setAttribute("scrolling", "no");
  script.parentNode.insertBefore(frame, script.nextSibling);
  window.addEventListener("message", function (e) {
    if (e.origin !== origin || e.source !== frame.contentWindow) { return; }
    var m = e.data;
    if (m && m.type === "ebill-widget-height" && m.height > 0 && m.height < 5000) {
      frame.style.height = m.height + "px";
    }
  });
})();
