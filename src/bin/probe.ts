#!/usr/bin/env node
// The container's liveness and readiness probe: `node dist/probe.js <socket>
// [seconds]` asks grpc.health.v1.Health/Check over the plugin's unix socket
// and exits 0 only for SERVING. Kubernetes' own gRPC probe needs a TCP port
// and the plugin listens on a unix socket only, so the probe is an exec; it
// runs inside the container's memory limit every few seconds, so it loads
// nothing but Node's http2 (≈ 40 ms, a fraction of the memory the gRPC
// library would cost) and speaks the one unary call by hand: a 5-byte frame
// around an empty HealthCheckRequest, and field 1 of the answer.
import { connect } from "node:http2";
import { connect as netConnect } from "node:net";

const SERVING = 1;
const STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

function probe(socket: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const session = connect("http://localhost", { createConnection: () => netConnect(socket) });
    const done = (problem: string | undefined) => {
      clearTimeout(timer);
      session.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => done(`no answer from ${socket} within ${timeoutMs / 1000} s`), timeoutMs);
    session.on("error", (e) => done(`cannot reach the plugin at ${socket}: ${e.message}`));
    const req = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/grpc",
      te: "trailers",
    });
    let grpcStatus: string | undefined;
    const parts: Buffer[] = [];
    req.on("response", (h) => (grpcStatus = h["grpc-status"] as string | undefined));
    req.on("trailers", (t) => (grpcStatus = (t["grpc-status"] as string | undefined) ?? grpcStatus));
    req.on("data", (d: Buffer) => parts.push(d));
    req.on("error", (e) => done(`health check failed: ${e.message}`));
    req.on("end", () => {
      const body = Buffer.concat(parts);
      if (grpcStatus !== "0") return done(`health check answered gRPC status ${grpcStatus ?? "none"}`);
      // One uncompressed message: flag, 4-byte length, then HealthCheckResponse { status = 1 (varint) }.
      const msg = body.subarray(5);
      const status = msg.length >= 2 && msg[0] === 0x08 ? (msg[1] as number) : 0;
      done(status === SERVING ? undefined : `the plugin answers ${STATUS[status] ?? status}`);
    });
    req.end(Buffer.alloc(5));
  });
}

const socket = process.argv[2] ?? "/tmp/artifact-plugins/s3/socket";
const seconds = Number(process.argv[3] ?? 3);
const problem = await probe(socket, (Number.isFinite(seconds) && seconds > 0 ? seconds : 3) * 1000);
if (problem) process.stderr.write(`probe: ${problem}\n`);
else process.stdout.write("SERVING\n");
process.exit(problem ? 1 : 0);
