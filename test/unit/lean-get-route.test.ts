// Where GetObject's lean data path sends a request (src/s3/targets.ts leanGetRoute),
// and where it leaves the request to the SDK because only the SDK knows the way.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/parse.js";
import { encodeKey } from "../../src/s3/lean-requests.js";
import { leanGetRoute } from "../../src/s3/targets.js";
import { endpointPort } from "../../src/s3/endpoint-guard.js";

const route = (yaml: string, env: NodeJS.ProcessEnv = {}) => {
  const cfg = parseConfig(yaml);
  return leanGetRoute(cfg, cfg.region || "us-east-1", env);
};

describe("lean GET route", () => {
  it("custom endpoints: host, port, scheme, path style", () => {
    expect(route("endpoint: minio:9000\nbucket: b1\ninsecure: true\n")).toEqual({
      protocol: "http:",
      host: "minio",
      port: 9000,
      pathStyle: true,
    });
    expect(route("endpoint: s3.example.com\nbucket: bkt\n")).toEqual({
      protocol: "https:",
      host: "s3.example.com",
      port: 443,
      pathStyle: true,
    });
    expect(route("endpoint: '[fd00::1]:9000'\nbucket: bkt\ninsecure: true\n")).toMatchObject({
      host: "fd00::1",
      port: 9000,
    });
  });

  it("AWS: virtual-hosted for DNS-label buckets, path style otherwise; the SDK where it must choose", () => {
    expect(route("endpoint: s3.amazonaws.com\nbucket: my-bucket\nregion: eu-west-1\n")).toEqual({
      protocol: "https:",
      host: "my-bucket.s3.amazonaws.com",
      port: 443,
      pathStyle: false,
    });
    expect(route("endpoint: s3.amazonaws.com\nbucket: my.dotted.bucket\nregion: eu-west-1\n")).toMatchObject({
      host: "s3.amazonaws.com",
      pathStyle: true,
    });
    expect(route("bucket: my-bucket\nregion: eu-west-1\n")).toMatchObject({
      host: "my-bucket.s3.eu-west-1.amazonaws.com",
    });
    // No region: S3's redirect to the bucket's region is the SDK's to follow.
    expect(route("bucket: my-bucket\n")).toBeUndefined();
    // The same with AWS named as the endpoint: a lean GET signed for the default region
    // would be refused for a bucket elsewhere, where the SDK's HEAD had followed the redirect.
    expect(route("endpoint: s3.amazonaws.com\nbucket: my-bucket\n")).toBeUndefined();
    expect(route("endpoint: s3.eu-west-1.amazonaws.com\nbucket: my-bucket\n")).toBeUndefined();
    expect(
      route("endpoint: minio:9000\nbucket: b1\ninsecure: true\n", { AWS_USE_FIPS_ENDPOINT: "true" }),
    ).toBeUndefined();
    expect(route("bucket: my-bucket\nregion: eu-west-1\n", { AWS_ENDPOINT_URL_S3: "http://x" })).toBeUndefined();
  });

  it("ports of endpoint spellings; keys encoded as S3 signs them", () => {
    expect(endpointPort("h:1")).toBe(1);
    expect(endpointPort("h")).toBeUndefined();
    expect(endpointPort("fd00::1")).toBeUndefined();
    expect(endpointPort("[fd00::1]:443")).toBe(443);
    expect(encodeKey("a b/c+d/é!*'()~._-")).toBe("a%20b/c%2Bd/%C3%A9%21%2A%27%28%29~._-");
  });
});
