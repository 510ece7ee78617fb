// Loaded just before require.js and the ipywidgets HTML manager (embed-amd.js), on pages that
// show widgets. Everything the manager needs is in the folder html-manager/ beside this file.
(function () {
  var folder = new URL("html-manager/", document.currentScript.src).href;

  // The manager's styles load their fonts relative to where require.js thinks each module
  // lives, so the modules that embed-amd.js defines are placed in that folder (require.js
  // reads a `require` object defined before it loads as its configuration). Nothing is
  // fetched from these paths: the modules are already defined by embed-amd.js.
  window.require = {
    paths: {
      "@jupyter-widgets/base": folder + "base",
      "@jupyter-widgets/base7": folder + "base7",
      "@jupyter-widgets/controls": folder + "controls",
      "@jupyter-widgets/controls7": folder + "controls7",
      "@jupyter-widgets/html-manager": folder + "html-manager",
      "@jupyter-widgets/html-manager/dist": folder.replace(/\/$/, ""),
    },
  };
  window.__jupyter_widgets_assets_path__ = folder;

  // The manager typesets widget labels through MathJax 2's MathJax.Hub.Queue; the book loads
  // MathJax 3 (deferred, so it is there by DOMContentLoaded; widgets are drawn on "load").
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub || !mathjax.typesetPromise) {
      return;
    }
    mathjax.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (command) {
          if (Array.isArray(command) && command[0] === "Typeset" && command[2]) {
            mathjax.startup.promise.then(function () {
              return mathjax.typesetPromise([command[2]]);
            });
          }
        });
      },
    };
  });
})();
