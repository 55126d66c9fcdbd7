// TeX to MathML through MathJax 3, as the course site, Jupyter and GitHub render it.
// Usage: node tex_to_mathml.js MATHJAX_DIR < [{"tex": "...", "display": true}, ...]
// Prints [{"mathml": "..."} or {"error": "..."}, ...] in the same order. MATHJAX_DIR is
// MathJax's es5 folder (the one the site ships); its "input/tex" component is the one
// the browser loads, with the same packages and the same autoload.
const mathjax = require(require("path").join(process.argv[2], "node-main.js"));

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  mathjax.init({loader: {load: ["input/tex"]}}).then(async (MathJax) => {
    const out = [];
    for (const {tex, display} of JSON.parse(input)) {
      try {  // the promise form waits for autoloaded packages (\color, \cancel, ...)
        out.push({mathml: await MathJax.tex2mmlPromise(tex, {display})});
      } catch (e) {
        out.push({error: String(e.message || e)});
      }
    }
    process.stdout.write(JSON.stringify(out));
  }).catch((e) => {
    process.stderr.write(`MathJax did not start: ${e.message || e}\n`);
    process.exit(1);
  });
});
