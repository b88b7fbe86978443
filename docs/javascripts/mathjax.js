// MathJax for pymdownx.arithmatex (generic mode), as in mkdocs-material's docs.
// MathJax itself is vendored, so that the site works offline (no CDN):
// vendor/mathjax-tex-svg-3.2.2.js is es5/tex-svg.js of the npm package
// mathjax@3.2.2 (`npm pack mathjax@3.2.2`; Apache-2.0, vendor/MATHJAX-LICENSE.txt),
// sha256 d4295dc33744836935c1399feece5159577b34c5c8ffb9f1c6324cd82e03a882.
// The SVG output draws glyphs as paths: one file, no web fonts to fetch.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  svg: {
    fontCache: "global",
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};

document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
