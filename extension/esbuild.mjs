// Bundles the extension (src/extension.ts → dist/extension.js, `vscode` left external), or with
// --tests the unit tests (test/*.test.ts → out/test/*.js) for node's built-in test runner.
import * as esbuild from "esbuild";
import { readdirSync } from "node:fs";

const production = process.argv.includes("--production");
const watch = process.argv.includes("--watch");
const tests = process.argv.includes("--tests");

const options = tests
  ? {
      entryPoints: readdirSync("test")
        .filter((f) => f.endsWith(".test.ts"))
        .map((f) => `test/${f}`),
      outdir: "out/test",
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      sourcemap: "inline",
      logLevel: "warning",
    }
  : {
      entryPoints: ["src/extension.ts"],
      outfile: "dist/extension.js",
      bundle: true,
      external: ["vscode"],
      platform: "node",
      format: "cjs",
      target: "node20",
      minify: production,
      sourcemap: !production,
      logLevel: "warning",
    };

if (watch) {
  await (await esbuild.context(options)).watch();
} else {
  await esbuild.build(options);
}
