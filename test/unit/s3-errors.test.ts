// How SDK failures become messages a workflow author can act on.
import { describe, expect, it } from "vitest";
import { PluginError } from "../../src/errors.js";
import { S3Error, storageError } from "../../src/s3/errors.js";

const where = { bucket: "b", key: "k/x.bin", endpointLabel: "http://127.0.0.1:9000" };
const sdkError = (name: string, status: number, message = "UnknownError") =>
  Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });

describe("storageError", () => {
  it("names operation, object, endpoint and S3's code", () => {
    const e = storageError(
      "GetObject",
      where,
      Object.assign(sdkError("NoSuchBucket", 404, "The specified bucket does not exist"), { Code: "NoSuchBucket" }),
    );
    expect(e.message).toBe(
      "GetObject s3://b/k/x.bin (endpoint http://127.0.0.1:9000) failed: NoSuchBucket: The specified bucket does not exist",
    );
  });

  it("carries what failed as fields: operation, bucket, key, endpoint, code, status, whether to try again", () => {
    const slow = storageError(
      "UploadPart 3",
      where,
      Object.assign(sdkError("SlowDown", 503, "Please reduce your request rate."), { Code: "SlowDown" }),
    );
    expect(slow).toBeInstanceOf(S3Error);
    expect({ ...(slow as S3Error) }).toMatchObject({
      operation: "UploadPart 3",
      bucket: "b",
      key: "k/x.bin",
      endpoint: "http://127.0.0.1:9000",
      code: "SlowDown",
      status: 503,
      retryable: true,
      kind: "storage",
    });
    const refused = storageError(
      "GetObject",
      where,
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9000"), { code: "ECONNREFUSED" }),
    ) as S3Error;
    expect([refused.code, refused.status, refused.retryable]).toEqual(["ECONNREFUSED", undefined, true]);
    const denied = storageError("HeadObject", where, sdkError("Unknown", 403)) as S3Error;
    expect([denied.code, denied.status, denied.retryable]).toEqual(["AccessDenied", 403, false]);
  });

  it("says which region to configure when the store names the one it expects", () => {
    const wrong = Object.assign(
      sdkError(
        "AuthorizationHeaderMalformed",
        400,
        "The authorization header is malformed; the region is wrong; expecting 'eu-west-1'.",
      ),
      {
        Code: "AuthorizationHeaderMalformed",
        Region: "eu-west-1",
      },
    );
    expect(storageError("CreateBucket", where, wrong).message).toContain(
      '(the store expects region "eu-west-1": set `region: eu-west-1` in the configuration)',
    );
    // Nothing is made up from a field that is not a region name.
    const odd = Object.assign(sdkError("AuthorizationHeaderMalformed", 400, "malformed"), {
      Code: "AuthorizationHeaderMalformed",
      Region: "<x>",
    });
    expect(storageError("CreateBucket", where, odd).message).not.toContain("expects region");
  });

  it("gives bodiless HEAD answers a name from their status", () => {
    expect(storageError("HeadObject", where, sdkError("Unknown", 403)).message).toContain(
      "failed: AccessDenied: HTTP 403",
    );
    const missing = storageError("HeadObject", where, sdkError("NotFound", 404));
    expect(missing.kind).toBe("not-found");
    expect(missing.message).toContain("NotFound: HTTP 404");
  });

  it("a bodiless 400 names the bucket when its name breaks S3's rule, else the region", () => {
    const short = storageError("HeadBucket", { ...where, bucket: "ab", key: undefined }, sdkError("Unknown", 400));
    expect(short.message).toContain('"ab" is not a valid S3 bucket name');
    const upper = storageError("HeadObject", { ...where, bucket: "My_Bucket" }, sdkError("Unknown", 400));
    expect(upper.message).toContain('"My_Bucket" is not a valid S3 bucket name');
    const fine = storageError("HeadObject", { ...where, bucket: "my-bucket" }, sdkError("Unknown", 400));
    expect(fine.message).not.toContain("not a valid S3 bucket name");
    expect(fine.message).toContain("wrong region");
  });

  it("an abort is a cancellation, and a PluginError passes through untouched", () => {
    const ac = new AbortController();
    ac.abort();
    expect(
      storageError("PutObject", where, Object.assign(new Error("aborted"), { name: "AbortError" }), ac.signal).kind,
    ).toBe("cancelled");
    const own = new PluginError("local", "mine");
    expect(storageError("PutObject", where, own)).toBe(own);
  });
});
