// @ts-check
// Smoke test of the cluster tier's machinery (scripts/lib/cluster.mjs): builds
// or reuses the binaries and images, starts the one-node cluster, runs a busybox
// Pod that echoes a line, prints its log, and tears everything down.
//   node test/cluster/smoke.mjs      (Linux, root; minutes the first time)
import {
  IMAGES,
  busyboxImage,
  cannotRun,
  clusterBinaries,
  pauseImage,
  startCluster,
} from "../../scripts/lib/cluster.mjs";
import { ToolError } from "../../scripts/lib/tools.mjs";

const MESSAGE = "hello from the cluster tier";
/** @type {Record<string, string>} */
const timings = {};
const since = (/** @type {number} */ t) => `${((Date.now() - t) / 1000).toFixed(1)} s`;

async function main() {
  const why = cannotRun();
  if (why) throw new ToolError(why);
  let t = Date.now();
  await clusterBinaries();
  timings["binaries"] = since(t);
  t = Date.now();
  const images = [await busyboxImage()];
  await pauseImage();
  timings["images"] = since(t);

  t = Date.now();
  const cluster = await startCluster({ images });
  timings["cluster up"] = since(t);
  try {
    t = Date.now();
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "smoke", namespace: "default" },
      spec: {
        restartPolicy: "Never",
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: "echo",
            image: IMAGES.busybox,
            imagePullPolicy: "IfNotPresent",
            command: ["sh", "-c", `echo "${MESSAGE}"`],
          },
        ],
      },
    };
    await cluster.kubectl(["create", "-f", "-"], { input: JSON.stringify(pod) });
    let phase = "";
    const end = Date.now() + 120_000;
    while (phase !== "Succeeded") {
      phase = (
        await cluster.kubectl(["-n", "default", "get", "pod", "smoke", "-o", "jsonpath={.status.phase}"])
      ).stdout.trim();
      if (phase === "Failed" || Date.now() > end) {
        const described = await cluster.kubectl(["-n", "default", "describe", "pod", "smoke"]).then(
          (r) => r.stdout,
          (e) => e.message,
        );
        throw new Error(`pod smoke is ${phase || "not running"} after ${since(t)}\n${described}\n${cluster.logs()}`);
      }
      if (phase !== "Succeeded") await new Promise((r) => setTimeout(r, 250));
    }
    timings["pod succeeded"] = since(t);
    const log = (await cluster.kubectl(["-n", "default", "logs", "smoke"])).stdout;
    process.stdout.write(`pod log: ${log}`);
    if (log.trim() !== MESSAGE)
      throw new Error(`pod log is ${JSON.stringify(log)}, expected ${JSON.stringify(MESSAGE)}`);
  } finally {
    t = Date.now();
    await cluster.stop();
    timings["teardown"] = since(t);
  }
  process.stdout.write(
    `smoke test passed: ${Object.entries(timings)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`${e instanceof ToolError ? e.message : (e.stack ?? e)}\n`);
  process.exit(1);
});
