// The linter `npm test` runs before the build: the rules that catch what the
// compiler does not (a promise nobody awaits, an async function where a
// callback's result is ignored) and imports that say when they are types only.
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "bench/**", "launcher/**", "**/*.mjs", "**/*.js", "**/*.cjs"] },
  {
    files: ["src/**/*.ts", "test/**/*.ts", "*.ts"],
    extends: [tseslint.configs.base],
    languageOptions: { parserOptions: { project: ["./tsconfig.test.json"], tsconfigRootDir: import.meta.dirname } },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      // import("…") in a type annotation stays allowed: it keeps a lazily loaded module out of the start-up path.
      "@typescript-eslint/consistent-type-imports": [
        "error",
        { fixStyle: "inline-type-imports", disallowTypeAnnotations: false },
      ],
    },
  },
);
