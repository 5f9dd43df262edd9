// grpc.health.v1 on the plugin's socket, as a probe asks it.
import { type Client, type ClientReadableStream, credentials, loadPackageDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";

type Cb<T> = (err: (Error & { code?: number }) | null, res: T) => void;
export interface HealthClient extends Client {
  check(req: { service: string }, opts: { deadline: number }, cb: Cb<{ status: string }>): void;
  watch(req: { service: string }): ClientReadableStream<{ status: string }>;
}
type Ctor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

export function healthClient(socket: string): HealthClient {
  const def = loadSync(healthProtoPath, {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: Ctor } } } };
  return new pkg.grpc.health.v1.Health(`unix:${socket}`, credentials.createInsecure()) as HealthClient;
}

/** One Check of `service` ("" is the whole server), bounded by `deadlineMs`. */
export function healthCheck(c: HealthClient, service = "", deadlineMs = 5000): Promise<{ status: string }> {
  return new Promise((resolve, reject) =>
    c.check({ service }, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}
