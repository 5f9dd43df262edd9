// Unit tests for plugin.configuration parsing: Argo's S3Bucket fields plus
// `tuning`, and the promise that every rejection names the offending field
// (a workflow author only sees the error text, never our source).
import { describe, expect, it } from "vitest";
import { ConfigCache, MAX_CONFIG_BYTES, parseConfig } from "../../src/config/parse.js";
import { DEFAULT_TUNING } from "../../src/config/types.js";
import { PluginError } from "../../src/errors.js";

const MiB = 1024 * 1024;

/** The thrown PluginError; fails the test when parsing succeeds or throws something else. */
function rejection(text: string): PluginError {
  let caught: unknown;
  try {
    parseConfig(text);
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a rejection for:\n${text}`).toBeInstanceOf(PluginError);
  const err = caught as PluginError;
  expect(err.kind).toBe("invalid-config");
  expect(err.message).toMatch(/^invalid plugin configuration: /);
  return err;
}

/** Asserts the rejection names `field` as the field path (the text right after the prefix). */
function expectRejectedAt(text: string, field: string): PluginError {
  const err = rejection(text);
  expect(err.message.startsWith(`invalid plugin configuration: ${field}: `), err.message).toBe(true);
  return err;
}

const FULL = `
endpoint: minio.example.internal:9000
bucket: " artifacts "
region: eu-west-1
insecure: false
accessKeySecret: {name: s3-creds, key: accessKey}
secretKeySecret: {name: s3-creds, key: secretKey}
sessionTokenSecret: {name: s3-creds, key: sessionToken, optional: true}
roleARN: " arn:aws:iam::123456789012:role/argo "
useSDKCreds: true
createBucketIfNotPresent:
  objectLocking: true
encryptionOptions:
  enableEncryption: true
  kmsKeyId: alias/argo
  kmsEncryptionContext: '{"team": "data"}'
caSecret: {name: minio-ca, key: ca.crt}
addressingStyle: virtual-hosted
tuning:
  partSizeMiB: 32
  partConcurrency: 4
  fileConcurrency: 12
  multipartThresholdMiB: 64
  maxAttempts: 3
  requestTimeoutSeconds: 90
  checksum: none
`;

describe("parseConfig: valid configurations", () => {
  it("parses every S3Bucket field and the tuning block", () => {
    const cfg = parseConfig(FULL);
    expect(cfg).toEqual({
      endpoint: "minio.example.internal:9000",
      bucket: "artifacts", // trimmed
      region: "eu-west-1",
      insecure: false,
      accessKeySecret: { name: "s3-creds", key: "accessKey", optional: false },
      secretKeySecret: { name: "s3-creds", key: "secretKey", optional: false },
      sessionTokenSecret: { name: "s3-creds", key: "sessionToken", optional: true },
      roleARN: "arn:aws:iam::123456789012:role/argo", // trimmed
      useSDKCreds: true,
      createBucketIfNotPresent: { objectLocking: true },
      encryptionOptions: {
        enableEncryption: true,
        kmsKeyId: "alias/argo",
        kmsEncryptionContext: '{"team": "data"}',
        serverSideCustomerKeySecret: undefined,
      },
      caSecret: { name: "minio-ca", key: "ca.crt", optional: false },
      addressingStyle: "virtual-hosted",
      tuning: {
        partSize: 32 * MiB,
        partConcurrency: 4,
        fileConcurrency: 12,
        multipartThreshold: 64 * MiB,
        maxAttempts: 3,
        requestTimeoutMs: 90_000,
        checksum: "none",
      },
    });
  });

  it("fills defaults for a bucket-only configuration", () => {
    const cfg = parseConfig("bucket: artifacts\n");
    expect(cfg).toEqual({
      endpoint: "",
      bucket: "artifacts",
      region: "",
      insecure: false,
      accessKeySecret: undefined,
      secretKeySecret: undefined,
      sessionTokenSecret: undefined,
      roleARN: "",
      useSDKCreds: false,
      createBucketIfNotPresent: undefined,
      encryptionOptions: undefined,
      caSecret: undefined,
      addressingStyle: "auto",
      tuning: { ...DEFAULT_TUNING },
    });
  });

  it("has the documented default tuning (16 MiB parts as Argo's built-in driver)", () => {
    expect(DEFAULT_TUNING).toEqual({
      partSize: 16 * MiB,
      partConcurrency: 8,
      fileConcurrency: 64,
      multipartThreshold: 16 * MiB,
      maxAttempts: 5,
      requestTimeoutMs: 300_000,
      checksum: "crc32",
    });
    expect(Object.isFrozen(DEFAULT_TUNING)).toBe(true);
  });

  it("defaults each tuning field that is left out", () => {
    const { tuning } = parseConfig("bucket: b\ntuning:\n  partConcurrency: 2\n");
    expect(tuning).toEqual({ ...DEFAULT_TUNING, partConcurrency: 2 });
    // The parsed object must not share identity with the frozen defaults.
    expect(parseConfig("bucket: b\n").tuning).not.toBe(DEFAULT_TUNING);
  });

  it("tuning.checksum is crc32 or none, nothing else", () => {
    expect(parseConfig("bucket: b\ntuning: {checksum: none}\n").tuning.checksum).toBe("none");
    expect(() => parseConfig("bucket: b\ntuning: {checksum: md5}\n")).toThrow(/tuning\.checksum/);
  });

  it("accepts the tuning bounds", () => {
    const lo = parseConfig(
      "bucket: b\ntuning: {partSizeMiB: 5, partConcurrency: 1, fileConcurrency: 1, multipartThresholdMiB: 1, maxAttempts: 1, requestTimeoutSeconds: 1}\n",
    );
    expect(lo.tuning).toEqual({
      partSize: 5 * MiB,
      partConcurrency: 1,
      fileConcurrency: 1,
      multipartThreshold: MiB,
      maxAttempts: 1,
      requestTimeoutMs: 1000,
      checksum: "crc32",
    });
    const hi = parseConfig(
      "bucket: b\ntuning: {partSizeMiB: 5120, partConcurrency: 64, fileConcurrency: 256, maxAttempts: 20}\n",
    );
    expect(hi.tuning.partSize).toBe(5 * 1024 * MiB);
    expect(hi.tuning.partConcurrency).toBe(64);
    expect(hi.tuning.fileConcurrency).toBe(256);
    expect(hi.tuning.maxAttempts).toBe(20);
  });

  it("maps addressingStyle: empty → auto, path, virtual-hosted", () => {
    expect(parseConfig('bucket: b\naddressingStyle: ""\n').addressingStyle).toBe("auto");
    expect(parseConfig("bucket: b\naddressingStyle: path\n").addressingStyle).toBe("path");
    expect(parseConfig("bucket: b\naddressingStyle: virtual-hosted\n").addressingStyle).toBe("virtual-hosted");
  });

  it("accepts host, host:port, IPv6 literals, and trims the endpoint", () => {
    expect(parseConfig("bucket: b\nendpoint: s3.amazonaws.com\n").endpoint).toBe("s3.amazonaws.com");
    expect(parseConfig("bucket: b\nendpoint: 127.0.0.1:9000\n").endpoint).toBe("127.0.0.1:9000");
    expect(parseConfig("bucket: b\nendpoint: '[::1]:9000'\n").endpoint).toBe("[::1]:9000");
    expect(parseConfig("bucket: b\nendpoint: ' minio:65535 '\n").endpoint).toBe("minio:65535");
  });

  it("accepts SSE-C with TLS, and a null field as absent", () => {
    const cfg = parseConfig(
      "bucket: b\nencryptionOptions:\n  enableEncryption: true\n  serverSideCustomerKeySecret: {name: sse, key: k}\nregion: ~\n",
    );
    expect(cfg.encryptionOptions?.serverSideCustomerKeySecret).toEqual({ name: "sse", key: "k", optional: false });
    expect(cfg.region).toBe("");
  });

  it("accepts access+secret keys with a session token", () => {
    const cfg = parseConfig(
      "bucket: b\naccessKeySecret: {name: c, key: a}\nsecretKeySecret: {name: c, key: s}\nsessionTokenSecret: {name: c, key: t}\n",
    );
    expect(cfg.sessionTokenSecret).toEqual({ name: "c", key: "t", optional: false });
  });

  it("accepts a configuration of exactly MAX_CONFIG_BYTES", () => {
    const head = "bucket: b\n#";
    const text = head + "x".repeat(MAX_CONFIG_BYTES - Buffer.byteLength(head));
    expect(Buffer.byteLength(text)).toBe(MAX_CONFIG_BYTES);
    expect(parseConfig(text).bucket).toBe("b");
  });
});

describe("parseConfig: rejections name the field", () => {
  it("unknown top-level field", () => {
    const err = expectRejectedAt("bucket: b\nbuckets: c\n", "buckets");
    expect(err.message).toContain("unknown field");
  });

  it("unknown nested fields", () => {
    expectRejectedAt("bucket: b\nencryptionOptions:\n  foo: 1\n", "encryptionOptions.foo");
    expectRejectedAt("bucket: b\ntuning:\n  bar: 1\n", "tuning.bar");
    expectRejectedAt(
      "bucket: b\ncreateBucketIfNotPresent:\n  objectLock: true\n",
      "createBucketIfNotPresent.objectLock",
    );
    expectRejectedAt("bucket: b\ncaSecret: {name: n, key: k, namespace: x}\n", "caSecret.namespace");
  });

  it("`key` at top level, with a hint about plugin.key", () => {
    const err = expectRejectedAt("bucket: b\nkey: my/artifact.tgz\n", "key");
    expect(err.message).toContain("plugin.key");
  });

  it("secret names and keys as Kubernetes allows them, before any API call", () => {
    expect(
      expectRejectedAt(
        "bucket: b\naccessKeySecret: {name: minio-keys/accesskey, key: k}\nsecretKeySecret: {name: s, key: k}\n",
        "accessKeySecret.name",
      ).message,
    ).toContain("not a Kubernetes secret name");
    expectRejectedAt(
      'bucket: b\naccessKeySecret: {name: a, key: k}\nsecretKeySecret: {name: "..", key: k}\n',
      "secretKeySecret.name",
    );
    expectRejectedAt('bucket: b\ncaSecret: {name: "a%2Fb", key: k}\n', "caSecret.name");
    expectRejectedAt(`bucket: b\ncaSecret: {name: ${"a".repeat(254)}, key: k}\n`, "caSecret.name");
    expect(expectRejectedAt('bucket: b\ncaSecret: {name: ca, key: "x/y"}\n', "caSecret.key").message).toContain(
      "not a key a Kubernetes secret can hold",
    );
    expect(
      parseConfig(
        "bucket: b\naccessKeySecret: {name: my-minio-cred.v2, key: access_key-1.txt}\nsecretKeySecret: {name: a1, key: K}\n",
      ).accessKeySecret,
    ).toEqual({ name: "my-minio-cred.v2", key: "access_key-1.txt", optional: false });
  });

  it("static keys written inline point to the *Secret fields", () => {
    expect(expectRejectedAt("bucket: b\naccessKey: AKIA\n", "accessKey").message).toContain("accessKeySecret");
    expect(expectRejectedAt("bucket: b\nsecretKey: s\n", "secretKey").message).toContain("secretKeySecret");
  });

  it("wrong types", () => {
    expect(expectRejectedAt('bucket: b\ninsecure: "yes"\n', "insecure").message).toContain("true or false");
    expect(expectRejectedAt("bucket: 5\n", "bucket").message).toContain("expected a string");
    expectRejectedAt("bucket: b\nuseSDKCreds: 1\n", "useSDKCreds");
    expectRejectedAt("bucket: b\nregion: [a]\n", "region");
    expectRejectedAt("bucket: b\ntuning: 5\n", "tuning");
    expectRejectedAt("bucket: b\nencryptionOptions: true\n", "encryptionOptions");
    expectRejectedAt("bucket: b\naccessKeySecret: s3-creds\nsecretKeySecret: {name: n, key: k}\n", "accessKeySecret");
    expectRejectedAt("bucket: b\ncaSecret: {name: 5, key: k}\n", "caSecret.name");
    expectRejectedAt('bucket: b\ntuning: {partSizeMiB: "8"}\n', "tuning.partSizeMiB");
    expectRejectedAt("bucket: b\ntuning: {maxAttempts: 2.5}\n", "tuning.maxAttempts");
  });

  it("tuning values out of range", () => {
    expect(expectRejectedAt("bucket: b\ntuning: {partSizeMiB: 4}\n", "tuning.partSizeMiB").message).toContain("got 4");
    expectRejectedAt("bucket: b\ntuning: {partSizeMiB: 5121}\n", "tuning.partSizeMiB");
    expectRejectedAt("bucket: b\ntuning: {partConcurrency: 0}\n", "tuning.partConcurrency");
    expectRejectedAt("bucket: b\ntuning: {partConcurrency: 65}\n", "tuning.partConcurrency");
    expectRejectedAt("bucket: b\ntuning: {fileConcurrency: 257}\n", "tuning.fileConcurrency");
    expectRejectedAt("bucket: b\ntuning: {multipartThresholdMiB: 0}\n", "tuning.multipartThresholdMiB");
    expectRejectedAt("bucket: b\ntuning: {maxAttempts: 21}\n", "tuning.maxAttempts");
    expectRejectedAt("bucket: b\ntuning: {requestTimeoutSeconds: -1}\n", "tuning.requestTimeoutSeconds");
  });

  it("missing or blank bucket", () => {
    expectRejectedAt("region: us-east-1\n", "bucket");
    expectRejectedAt("bucket: '   '\n", "bucket");
    expectRejectedAt("bucket: ~\n", "bucket");
  });

  it("empty and whitespace-only text", () => {
    expect(expectRejectedAt("", "(configuration)").message).toContain("empty");
    expect(expectRejectedAt("  \n\t\n ", "(configuration)").message).toContain("empty");
  });

  it("malformed YAML", () => {
    expect(expectRejectedAt("bucket: [unclosed\n", "(configuration)").message).toContain("not valid YAML");
    expectRejectedAt("bucket: b\n  nested: : :\n", "(configuration)");
  });

  it("YAML that is a list or a scalar", () => {
    expect(expectRejectedAt("- bucket: b\n", "(configuration)").message).toContain("a list");
    expect(expectRejectedAt("just-a-bucket-name\n", "(configuration)").message).toContain("expected a mapping");
    expectRejectedAt("42\n", "(configuration)");
  });

  it("duplicate keys are refused", () => {
    const err = rejection("bucket: a\nregion: r\nbucket: b\n");
    expect(err.message).toMatch(/unique|duplicate/i);
  });

  it("a duplicate key is named in the error", () => {
    // Without the name the author must hunt for the duplicate in a long YAML block.
    expect(rejection("bucket: a\nregion: r\nbucket: b\n").message).toContain("bucket");
    expect(rejection("bucket: a\ntuning:\n  partSizeMiB: 5\n  partSizeMiB: 6\n").message).toContain("partSizeMiB");
  });

  it("YAML alias expansion beyond the limit is an invalid-config error, not a raw exception", () => {
    // Small text, huge expansion: 10 × 10 × 10 × 10 nodes through aliases.
    const bomb =
      "bucket: b\n" +
      "x0: &a [x, x, x, x, x, x, x, x, x, x]\n" +
      "x1: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
      "x2: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
      "x3: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
    expectRejectedAt(bomb, "(configuration)");
  });

  describe("endpoint", () => {
    it("with a scheme", () => {
      const err = expectRejectedAt("bucket: b\nendpoint: https://s3.amazonaws.com\n", "endpoint");
      expect(err.message).toContain("scheme");
      expectRejectedAt("bucket: b\nendpoint: http://127.0.0.1:9000\n", "endpoint");
    });

    it("with a path, query or space", () => {
      expectRejectedAt("bucket: b\nendpoint: minio:9000/bucket\n", "endpoint");
      expectRejectedAt("bucket: b\nendpoint: minio:9000?x=1\n", "endpoint");
      expectRejectedAt("bucket: b\nendpoint: 'min io:9000'\n", "endpoint");
    });

    it("with user@ credentials, without echoing them", () => {
      const err = expectRejectedAt("bucket: b\nendpoint: minioadmin:Sup3rSecret@minio:9000\n", "endpoint");
      expect(err.message).not.toContain("minioadmin");
      expect(err.message).not.toContain("Sup3rSecret");
    });

    it("with a password containing '@', without echoing any part of it", () => {
      const err = expectRejectedAt("bucket: b\nendpoint: admin:pa@ssw0rd@minio:9000\n", "endpoint");
      expect(err.message).not.toContain("admin");
      expect(err.message).not.toContain("ssw0rd");
    });

    it("with a scheme and credentials, without echoing them", () => {
      const err = expectRejectedAt("bucket: b\nendpoint: https://minioadmin:Sup3rSecret@minio:9000\n", "endpoint");
      expect(err.message).not.toContain("Sup3rSecret");
      expect(err.message).not.toContain("minioadmin");
    });

    it("with a bad port", () => {
      expect(expectRejectedAt("bucket: b\nendpoint: minio:0\n", "endpoint").message).toContain("port 0");
      expect(expectRejectedAt("bucket: b\nendpoint: minio:65536\n", "endpoint").message).toContain("65536");
      expectRejectedAt("bucket: b\nendpoint: minio:123456\n", "endpoint");
      expectRejectedAt("bucket: b\nendpoint: 'minio:'\n", "endpoint");
      expectRejectedAt("bucket: b\nendpoint: minio:http\n", "endpoint");
    });
  });

  it("invalid addressingStyle", () => {
    const err = expectRejectedAt("bucket: b\naddressingStyle: virtual\n", "addressingStyle");
    expect(err.message).toContain('"virtual"');
  });

  it("accessKeySecret and secretKeySecret only together", () => {
    const a = expectRejectedAt("bucket: b\naccessKeySecret: {name: c, key: a}\n", "secretKeySecret");
    expect(a.message).toContain("set together");
    expectRejectedAt("bucket: b\nsecretKeySecret: {name: c, key: s}\n", "accessKeySecret");
  });

  it("sessionTokenSecret alone", () => {
    expectRejectedAt("bucket: b\nsessionTokenSecret: {name: c, key: t}\n", "sessionTokenSecret");
  });

  it("secret refs without name or key", () => {
    expectRejectedAt("bucket: b\ncaSecret: {key: ca.crt}\n", "caSecret.name");
    expectRejectedAt("bucket: b\ncaSecret: {name: ca}\n", "caSecret.key");
    expectRejectedAt(
      "bucket: b\naccessKeySecret: {name: '', key: a}\nsecretKeySecret: {name: c, key: s}\n",
      "accessKeySecret.name",
    );
    expectRejectedAt(
      "bucket: b\nencryptionOptions:\n  serverSideCustomerKeySecret: {name: sse}\n",
      "encryptionOptions.serverSideCustomerKeySecret.key",
    );
  });

  it("kmsKeyId together with serverSideCustomerKeySecret", () => {
    const err = expectRejectedAt(
      "bucket: b\nencryptionOptions:\n  enableEncryption: true\n  kmsKeyId: k\n  serverSideCustomerKeySecret: {name: s, key: k}\n",
      "encryptionOptions",
    );
    expect(err.message).toContain("kmsKeyId");
  });

  it("SSE-C with insecure: true", () => {
    const err = expectRejectedAt(
      "bucket: b\ninsecure: true\nencryptionOptions:\n  enableEncryption: true\n  serverSideCustomerKeySecret: {name: s, key: k}\n",
      "encryptionOptions.serverSideCustomerKeySecret",
    );
    expect(err.message).toContain("TLS");
  });

  it("kmsEncryptionContext that is not JSON or not a JSON object", () => {
    const f = "encryptionOptions.kmsEncryptionContext";
    expect(
      expectRejectedAt("bucket: b\nencryptionOptions: {kmsKeyId: k, kmsEncryptionContext: 'team=data'}\n", f).message,
    ).toContain("JSON");
    expectRejectedAt("bucket: b\nencryptionOptions: {kmsKeyId: k, kmsEncryptionContext: '[\"a\"]'}\n", f);
    expectRejectedAt("bucket: b\nencryptionOptions: {kmsKeyId: k, kmsEncryptionContext: '\"s\"'}\n", f);
    expectRejectedAt("bucket: b\nencryptionOptions: {kmsKeyId: k, kmsEncryptionContext: 'null'}\n", f);
  });

  it("text above MAX_CONFIG_BYTES, counted in bytes", () => {
    const over = "bucket: b\n#" + "x".repeat(MAX_CONFIG_BYTES);
    expect(expectRejectedAt(over, "(configuration)").message).toContain("KiB");
    // Fewer characters than the limit, more bytes (2 bytes per "é").
    const multiByte = "bucket: b\n#" + "é".repeat(MAX_CONFIG_BYTES / 2);
    expect(multiByte.length).toBeLessThan(MAX_CONFIG_BYTES);
    expectRejectedAt(multiByte, "(configuration)");
  });
});

describe("ConfigCache", () => {
  it("returns the identical object for the same text and a new one for other text", () => {
    const cache = new ConfigCache();
    const a = cache.get("bucket: one\n");
    expect(cache.get("bucket: one\n")).toBe(a);
    const b = cache.get("bucket: two\n");
    expect(b).not.toBe(a);
    expect(b.bucket).toBe("two");
    expect(cache.get("bucket: one\n")).toBe(a);
  });

  it("throws for an invalid text every time (failures are not cached as values)", () => {
    const cache = new ConfigCache();
    for (let i = 0; i < 3; i++) {
      expect(() => cache.get("bucket: b\nnope: 1\n")).toThrow(/nope/);
    }
  });

  it("evicts beyond its capacity and parses again", () => {
    const cache = new ConfigCache(2);
    const a = cache.get("bucket: a\n");
    cache.get("bucket: b\n");
    cache.get("bucket: c\n");
    const again = cache.get("bucket: a\n");
    expect(again).not.toBe(a);
    expect(again).toEqual(a);
  });
});

describe("hostile configuration text", () => {
  it("a text of thousands of short keys is refused before it reaches the parser (whose duplicate-key check is quadratic)", () => {
    const many = "bucket: b\n" + Array.from({ length: 8_000 }, (_, i) => `k${i}:1`).join("\n");
    expect(Buffer.byteLength(many)).toBeLessThan(MAX_CONFIG_BYTES);
    const cache = new ConfigCache();
    expect(() => cache.get(many)).toThrow(/more than 2000 keys or colons/);
    expect(() => cache.get(many)).toThrow(/more than 2000 keys or colons/);
  });

  it("a failed parse is cached: the same bad text is not parsed twice", () => {
    const cache = new ConfigCache();
    const bad = "bucket: [unclosed\n";
    let first: unknown;
    try {
      cache.get(bad);
    } catch (e) {
      first = e;
    }
    let second: unknown;
    try {
      cache.get(bad);
    } catch (e) {
      second = e;
    }
    expect(second).toBe(first);
  });

  it("names odd keys and values faithfully: constructor, 1e400, a NUL, terminal escapes", () => {
    expect(() => parseConfig("bucket: b\nconstructor: 1\n")).toThrow(/constructor: unknown field \(allowed here:/);
    expect(() => parseConfig("bucket: b\ntuning: {partSizeMiB: 1e400}\n")).toThrow(/Infinity/);
    let msg = "";
    try {
      parseConfig('bucket: b\n"bad\\0key\\u001b]0;title\\u0007": 1\n');
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain("\\u0000");
    expect(msg).toContain("\\u001b");
    expect(msg).not.toMatch(/[\u0000\u001b\u0007]/);
  });
});
