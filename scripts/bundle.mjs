// @ts-check
// The files the image runs: esbuild bundles the compiled plugin (dist/bin/plugin.js)
// with every dependency into one CommonJS file, dist/main.cjs, and the command
// line client (dist/bin/cli.js) into dist/cli.cjs (for `kubectl exec`). Why: the plugin
// starts in every workflow pod, and resolving, reading and linking ~900 module
// files (ES modules, and Node's ES facades of the built-in modules they import)
// was most of its start-up (docs/performance.md, "Start-up and idle memory").
//
// What a bundle cannot carry is put beside it:
// - .proto files that grpc-health-check and @grpc/reflection read at run time
//   from their own folders: copied under dist/vendor/<package>/, and
//   each such module's __dirname points at its copy;
// - @node-rs/crc32's native binary, loaded with createRequire at run time
//   (crc32.ts falls back to zlib without it): the image copies that package.
// The probe (dist/bin/probe.js) imports only node: modules; it is copied as it is to
// dist/probe.js, the path deploy/'s probes (and installs made from them) run.
// `npm run build` runs this after tsc; `node scripts/bundle.mjs` alone redoes it.
import { copyFileSync, cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

const DIST = join(ROOT, "dist");
const VENDOR = join(DIST, "vendor");
/** Packages that read files beside their own code, and the folders they read. */
const ASSETS = { "grpc-health-check": ["proto"], "@grpc/reflection": ["build/proto"] };

/** @type {import("esbuild").Plugin} */
const assetDirs = {
  name: "asset-dirs",
  setup(b) {
    b.onLoad({ filter: /node_modules[\\/].*\.js$/ }, (args) => {
      // The packages in ASSETS, and nothing else.
      const pkg = Object.keys(ASSETS).find((p) => args.path.includes(`node_modules/${p}/`));
      if (pkg === undefined) return undefined;
      const pkgRoot = args.path.slice(0, args.path.indexOf(`node_modules/${pkg}/`) + `node_modules/${pkg}/`.length);
      const here = relative(pkgRoot, dirname(args.path));
      const source = readFileSync(args.path, "utf8").replace(
        /\b__dirname\b/g,
        `require("node:path").join(__dirname, ${JSON.stringify(`vendor/${pkg}/${here}`)})`,
      );
      return { contents: source, loader: "js" };
    });
  },
};

/**
 * Packages built with rolldown (OpenTelemetry's) load some CommonJS
 * dependencies through `createRequire(import.meta.url)` at run time
 * (`__require("@grpc/grpc-js")`), which a bundle cannot see: in the image
 * that module is not there, and beside node_modules it is a second grpc-js
 * whose credentials the bundled one refuses (the OTLP/gRPC exporter sent
 * nothing). Calls with a literal name become require() and are bundled.
 * @type {import("esbuild").Plugin}
 */
const runtimeRequires = {
  name: "runtime-requires",
  setup(b) {
    b.onLoad({ filter: /node_modules[\\/].*\.mjs$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      if (!source.includes("__require(")) return undefined;
      return { contents: source.replace(/\b__require\((["'][^"']+["'])\)/g, "require($1)"), loader: "js" };
    });
  },
};

/** @param {Record<string, string>} [entries] output name (dist/<name>.cjs) → compiled entry */
export async function bundle(entries = { main: join(DIST, "bin", "plugin.js"), cli: join(DIST, "bin", "cli.js") }) {
  rmSync(VENDOR, { recursive: true, force: true });
  // import.meta.url in the compiled modules: the bundle's own file, directly
  // under dist/ like dist/package-root.js, which all package paths go through.
  const meta = join(DIST, ".import-meta.mjs");
  writeFileSync(meta, 'export const importMetaUrl = require("node:url").pathToFileURL(__filename).href;\n');
  const result = await build({
    entryPoints: entries,
    outdir: DIST,
    outExtension: { ".js": ".cjs" },
    bundle: true,
    platform: "node",
    mainFields: ["module", "main"],
    format: "cjs",
    target: "node22",
    define: { "import.meta.url": "importMetaUrl" },
    inject: [meta],
    plugins: [assetDirs, runtimeRequires],
    legalComments: "external",
    // ASCII only: one non-ASCII character (in a comment) makes V8 hold the whole source as UTF-16, twice the memory.
    charset: "ascii",
    minifyWhitespace: true,
    logLevel: "warning",
    metafile: true,
  });
  rmSync(meta);
  copyFileSync(join(DIST, "bin", "probe.js"), join(DIST, "probe.js"));
  for (const [pkg, dirs] of Object.entries(ASSETS)) {
    for (const d of dirs) cpSync(join(ROOT, "node_modules", pkg, d), join(VENDOR, pkg, d), { recursive: true });
  }
  return result;
}

// Run as a script (a path that needs URL escaping compares right too).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const result = await bundle();
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  process.stdout.write(
    `bundled dist/main.cjs and dist/cli.cjs (${(bytes / 2 ** 20).toFixed(1)} MiB with their legal notes)\n`,
  );
}
