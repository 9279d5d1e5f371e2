// Lint for the extension: typescript-eslint's recommended type-aware rules, plus a rule that
// keeps `vscode` out of the pure modules under src/common (they are unit-tested without it).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "out/**", "node_modules/**", "*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      eqeqeq: "error",
      curly: "error",
    },
  },
  {
    // node:test's describe/it return promises the runner awaits itself.
    files: ["test/**/*.ts"],
    rules: { "@typescript-eslint/no-floating-promises": "off" },
  },
  {
    files: ["src/common/**/*.ts", "test/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { paths: ["vscode"], patterns: ["../*.ts", "vscode-languageclient*"] }],
    },
  },
);
