// Strict parsing of plugin.configuration. Every rejection names the field path
// (e.g. `encryptionOptions.kmsKeyId`) so a workflow author can fix the YAML
// without reading our source. Results are cached by the configuration text,
// which Argo sends unchanged on every RPC.
import { parseDocument } from "yaml";
import { PluginError, describeError } from "../errors.js";
import { Lru } from "../util/lru.js";
import { secretKeyProblem, secretNameProblem } from "../util/kube-names.js";
import {
  type AddressingStyle,
  DEFAULT_TUNING,
  type EncryptionOptions,
  type PluginConfig,
  type SecretRef,
  type Tuning,
} from "./types.js";

type Obj = Record<string, unknown>;

/**
 * Bounds checked before the text reaches the YAML parser, whose duplicate-key
 * check is quadratic in a mapping's size (44,000 short keys in 256 KiB held the
 * event loop for half a minute). A real configuration is a few hundred bytes
 * with a few dozen keys; colons bound the number of keys a text can hold.
 */
export const MAX_CONFIG_BYTES = 64 * 1024;
export const MAX_CONFIG_COLONS = 2000;

/** Control characters (a NUL, terminal escapes) shown as escapes, long text cut. */
export function printable(s: string, max = 80): string {
  const escaped = s.replace(
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return escaped.length > max ? `${escaped.slice(0, max)}…` : escaped;
}

function fail(field: string, why: string): never {
  throw new PluginError("invalid-config", `invalid plugin configuration: ${printable(field, 120)}: ${why}`);
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "number") return `number ${String(v)}`; // Infinity, not JSON's "null"
  if (typeof v === "string") return `string ${printable(JSON.stringify(v))}`;
  return typeof v === "object" ? "a mapping" : `${typeof v} ${printable(String(v))}`;
}

function asObject(v: unknown, field: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    fail(field, `expected a mapping, got ${typeName(v)}`);
  }
  return v as Obj;
}

function checkKeys(o: Obj, field: string, allowed: readonly string[], hints: Record<string, string> = {}): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      const where = field ? `${field}.${k}` : k;
      // Own properties only: "constructor" is not a hint.
      fail(
        where,
        (Object.hasOwn(hints, k) ? hints[k] : undefined) ?? `unknown field (allowed here: ${allowed.join(", ")})`,
      );
    }
  }
}

function str(o: Obj, k: string, field: string): string {
  const v = o[k];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") fail(field, `expected a string, got ${typeName(v)}`);
  return v;
}

function bool(o: Obj, k: string, field: string): boolean {
  const v = o[k];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") fail(field, `expected true or false, got ${typeName(v)}`);
  return v;
}

function secretRef(o: Obj, k: string, field: string): SecretRef | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  const s = asObject(v, field);
  checkKeys(s, field, ["name", "key", "optional"]);
  const name = str(s, "name", `${field}.name`);
  const key = str(s, "key", `${field}.key`);
  if (!name) fail(`${field}.name`, "required (the Kubernetes secret's name)");
  if (!key) fail(`${field}.key`, "required (the key inside the secret)");
  const badName = secretNameProblem(name);
  if (badName) fail(`${field}.name`, `${JSON.stringify(name)} ${badName}`);
  const badKey = secretKeyProblem(key);
  if (badKey) fail(`${field}.key`, `${JSON.stringify(key)} ${badKey}`);
  return { name, key, optional: bool(s, "optional", `${field}.optional`) };
}

function positiveInt(o: Obj, k: string, field: string, min: number, max: number): number | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v)) fail(field, `expected an integer, got ${typeName(v)}`);
  if (v < min || v > max) fail(field, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

const MiB = 1024 * 1024;

function parseTuning(v: unknown): Tuning {
  if (v === undefined || v === null) return { ...DEFAULT_TUNING };
  const o = asObject(v, "tuning");
  checkKeys(o, "tuning", [
    "partSizeMiB",
    "partConcurrency",
    "fileConcurrency",
    "multipartThresholdMiB",
    "maxAttempts",
    "requestTimeoutSeconds",
    "checksum",
  ]);
  const checksum = o["checksum"] ?? DEFAULT_TUNING.checksum;
  if (checksum !== "crc32" && checksum !== "none")
    fail("tuning.checksum", `expected "crc32" or "none", got ${typeName(checksum)}`);
  const partMiB = positiveInt(o, "partSizeMiB", "tuning.partSizeMiB", 5, 5 * 1024);
  const thresholdMiB = positiveInt(o, "multipartThresholdMiB", "tuning.multipartThresholdMiB", 1, 5 * 1024);
  const timeout = positiveInt(o, "requestTimeoutSeconds", "tuning.requestTimeoutSeconds", 1, 24 * 3600);
  return {
    partSize: partMiB !== undefined ? partMiB * MiB : DEFAULT_TUNING.partSize,
    partConcurrency:
      positiveInt(o, "partConcurrency", "tuning.partConcurrency", 1, 64) ?? DEFAULT_TUNING.partConcurrency,
    fileConcurrency:
      positiveInt(o, "fileConcurrency", "tuning.fileConcurrency", 1, 256) ?? DEFAULT_TUNING.fileConcurrency,
    multipartThreshold: thresholdMiB !== undefined ? thresholdMiB * MiB : DEFAULT_TUNING.multipartThreshold,
    maxAttempts: positiveInt(o, "maxAttempts", "tuning.maxAttempts", 1, 20) ?? DEFAULT_TUNING.maxAttempts,
    requestTimeoutMs: timeout !== undefined ? timeout * 1000 : DEFAULT_TUNING.requestTimeoutMs,
    checksum,
  };
}

/** The endpoint as it may be shown in an error: anything up to the last "@" could be a password. */
function shownEndpoint(e: string): string {
  const at = e.lastIndexOf("@");
  if (at < 0) return e;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(e)?.[0] ?? "";
  return `${scheme}…@${e.slice(at + 1)}`;
}

function parseEndpoint(raw: string): string {
  const e = raw.trim();
  if (!e) return "";
  if (e.includes("://")) {
    fail(
      "endpoint",
      `expected host[:port] without a scheme, got "${shownEndpoint(e)}" (use insecure: true for plain HTTP)`,
    );
  }
  if (/[/?#@\s]/.test(e)) {
    fail("endpoint", `expected host[:port] only: no path, query, user or spaces, got "${shownEndpoint(e)}"`);
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(e);
  if (!m) fail("endpoint", `"${e}" is not a host[:port]`);
  if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)) fail("endpoint", `port ${m[2]} out of range`);
  return e;
}

function parseAddressing(v: string): AddressingStyle {
  if (v === "") return "auto";
  if (v === "path" || v === "virtual-hosted") return v;
  return fail("addressingStyle", `expected "", "path" or "virtual-hosted", got "${v}"`);
}

function parseEncryption(o: Obj, insecure: boolean): EncryptionOptions | undefined {
  const v = o["encryptionOptions"];
  if (v === undefined || v === null) return undefined;
  const e = asObject(v, "encryptionOptions");
  checkKeys(e, "encryptionOptions", [
    "enableEncryption",
    "kmsKeyId",
    "kmsEncryptionContext",
    "serverSideCustomerKeySecret",
  ]);
  const opts: EncryptionOptions = {
    enableEncryption: bool(e, "enableEncryption", "encryptionOptions.enableEncryption"),
    kmsKeyId: str(e, "kmsKeyId", "encryptionOptions.kmsKeyId"),
    kmsEncryptionContext: str(e, "kmsEncryptionContext", "encryptionOptions.kmsEncryptionContext"),
    serverSideCustomerKeySecret: secretRef(
      e,
      "serverSideCustomerKeySecret",
      "encryptionOptions.serverSideCustomerKeySecret",
    ),
  };
  if (opts.kmsKeyId && opts.serverSideCustomerKeySecret) {
    fail("encryptionOptions", "kmsKeyId and serverSideCustomerKeySecret cannot be set together");
  }
  if (opts.serverSideCustomerKeySecret && insecure) {
    fail("encryptionOptions.serverSideCustomerKeySecret", "SSE-C needs TLS; it cannot be used with insecure: true");
  }
  if (opts.kmsEncryptionContext) {
    let ctx: unknown;
    try {
      ctx = JSON.parse(opts.kmsEncryptionContext);
    } catch {
      fail("encryptionOptions.kmsEncryptionContext", "not valid JSON");
    }
    if (typeof ctx !== "object" || ctx === null || Array.isArray(ctx)) {
      fail("encryptionOptions.kmsEncryptionContext", "must be a JSON object of string values");
    }
  }
  return opts;
}

const TOP_LEVEL = [
  "endpoint",
  "bucket",
  "region",
  "insecure",
  "accessKeySecret",
  "secretKeySecret",
  "sessionTokenSecret",
  "roleARN",
  "useSDKCreds",
  "createBucketIfNotPresent",
  "encryptionOptions",
  "caSecret",
  "addressingStyle",
  "tuning",
] as const;

const HINTS: Record<string, string> = {
  key: "the object key belongs in the artifact's plugin.key, not in plugin.configuration",
  accessKey: "unknown field; static keys come from a Kubernetes secret: use accessKeySecret {name, key}",
  secretKey: "unknown field; static keys come from a Kubernetes secret: use secretKeySecret {name, key}",
};

/** Parse and validate configuration text. Throws PluginError("invalid-config"). */
export function parseConfig(text: string): PluginConfig {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    fail("(configuration)", `larger than ${MAX_CONFIG_BYTES / 1024} KiB; refusing to parse it`);
  }
  let colons = 0;
  for (let i = text.indexOf(":"); i >= 0 && colons <= MAX_CONFIG_COLONS; i = text.indexOf(":", i + 1)) colons++;
  if (colons > MAX_CONFIG_COLONS)
    fail(
      "(configuration)",
      `more than ${MAX_CONFIG_COLONS} keys or colons; a plugin configuration has a few dozen. Refusing to parse it`,
    );
  if (text.trim() === "") fail("(configuration)", "empty: at least `bucket` is required");
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = first.linePos?.[0]?.line;
    // Name the offending text (for a duplicate key, the key itself) and where it is.
    const lineEnd = text.indexOf("\n", first.pos[0]);
    const near = text
      .slice(first.pos[0], lineEnd < 0 ? undefined : lineEnd)
      .slice(0, 60)
      .trim();
    const where = `${line !== undefined ? ` at line ${line}` : ""}${near ? ` ("${near}")` : ""}`;
    const what = (first.message.split("\n")[0] ?? "").replace(/\s+at line \d+, column \d+:?$/, "");
    fail("(configuration)", `not valid YAML${where}: ${what}`);
  }
  let js: unknown;
  try {
    js = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // e.g. an alias bomb: the yaml library refuses to expand it.
    fail("(configuration)", `not usable YAML: ${describeError(e)}`);
  }
  const root = asObject(js, "(configuration)");
  checkKeys(root, "", TOP_LEVEL, HINTS);

  const insecure = bool(root, "insecure", "insecure");
  const bucket = str(root, "bucket", "bucket").trim();
  if (!bucket) fail("bucket", "required");

  let createBucket: PluginConfig["createBucketIfNotPresent"];
  const cb = root["createBucketIfNotPresent"];
  if (cb !== undefined && cb !== null) {
    const c = asObject(cb, "createBucketIfNotPresent");
    checkKeys(c, "createBucketIfNotPresent", ["objectLocking"]);
    createBucket = { objectLocking: bool(c, "objectLocking", "createBucketIfNotPresent.objectLocking") };
  }

  const cfg: PluginConfig = {
    endpoint: parseEndpoint(str(root, "endpoint", "endpoint")),
    bucket,
    region: str(root, "region", "region").trim(),
    insecure,
    accessKeySecret: secretRef(root, "accessKeySecret", "accessKeySecret"),
    secretKeySecret: secretRef(root, "secretKeySecret", "secretKeySecret"),
    sessionTokenSecret: secretRef(root, "sessionTokenSecret", "sessionTokenSecret"),
    roleARN: str(root, "roleARN", "roleARN").trim(),
    useSDKCreds: bool(root, "useSDKCreds", "useSDKCreds"),
    createBucketIfNotPresent: createBucket,
    encryptionOptions: parseEncryption(root, insecure),
    caSecret: secretRef(root, "caSecret", "caSecret"),
    addressingStyle: parseAddressing(str(root, "addressingStyle", "addressingStyle")),
    tuning: parseTuning(root["tuning"]),
  };
  if (!!cfg.accessKeySecret !== !!cfg.secretKeySecret) {
    fail(
      cfg.accessKeySecret ? "secretKeySecret" : "accessKeySecret",
      "accessKeySecret and secretKeySecret must be set together",
    );
  }
  if (cfg.sessionTokenSecret && !cfg.accessKeySecret) {
    fail("sessionTokenSecret", "needs accessKeySecret and secretKeySecret");
  }
  return cfg;
}

/** Parsed configurations keyed by their text: Argo resends the same text on every RPC. */
/** Parsed configurations by text; failures are kept too, so a retried bad text costs nothing again. */
export class ConfigCache {
  private readonly entries: Lru<string, PluginConfig | PluginError>;

  constructor(capacity = 64) {
    this.entries = new Lru(capacity);
  }

  get(text: string): PluginConfig {
    const hit = this.entries.get(text);
    if (hit instanceof PluginError) throw hit;
    if (hit) return hit;
    try {
      const cfg = parseConfig(text);
      this.entries.set(text, cfg);
      return cfg;
    } catch (e) {
      if (e instanceof PluginError) this.entries.set(text, e);
      throw e;
    }
  }
}
