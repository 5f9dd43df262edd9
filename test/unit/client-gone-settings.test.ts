// ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS (src/settings.ts): on by default only where a wait container
// is the client (a workflow's pod), never in the shared sidecar, strict about its value.
import { describe, expect, it } from "vitest";
import { readSettings, type Settings, SettingsError } from "../../src/settings.js";

const MiB = 1024 * 1024;
const WORKFLOW = { ARGO_WORKFLOW_NAME: "wf-1", ARGO_WORKFLOW_UID: "5d0c3b0e" };
const settings = (env: Record<string, string>, inPod: boolean) =>
  readSettings(["/tmp/plugin.sock"], env, 256 * MiB, inPod) as Settings;

describe("ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS", () => {
  it("is 300 s in a workflow's pod, off in the argo-server sidecar and outside Kubernetes", () => {
    expect(settings(WORKFLOW, true).leaveWhenClientGoneMs).toBe(300_000);
    expect(settings({}, true).shared).toBe(true);
    expect(settings({}, true).leaveWhenClientGoneMs).toBeUndefined();
    expect(settings(WORKFLOW, false).leaveWhenClientGoneMs).toBeUndefined();
  });

  it("takes the operator's value, and 0 turns it off", () => {
    expect(settings({ ...WORKFLOW, ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "2.5" }, true).leaveWhenClientGoneMs).toBe(2500);
    expect(settings({ ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "2" }, false).leaveWhenClientGoneMs).toBe(2000);
    expect(
      settings({ ...WORKFLOW, ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "0" }, true).leaveWhenClientGoneMs,
    ).toBeUndefined();
  });

  it("is refused for the shared sidecar and when it is not a number of seconds, naming the variable", () => {
    expect(() => settings({ ARGO_S3_PLUGIN_SHARED: "true", ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "60" }, true)).toThrow(
      /ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: the shared argo-server sidecar serves every UI user/,
    );
    expect(() => settings({ ...WORKFLOW, ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "5m" }, true)).toThrow(SettingsError);
    // Past Node's longest timer it would fire at once, not never.
    expect(() => settings({ ...WORKFLOW, ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "3000000" }, true)).toThrow(
      /ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: at most 2147483 seconds/,
    );
    expect(settings({ ...WORKFLOW, ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "2147483" }, true).leaveWhenClientGoneMs).toBe(
      2_147_483_000,
    );
    expect(() => settings({ ...WORKFLOW, ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "-1" }, true)).toThrow(
      /ARGO_S3_PLUGIN_CLIENT_GONE_SECONDS: "-1" is not a number of seconds/,
    );
  });
});
