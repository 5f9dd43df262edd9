// The unix socket's life before and after bind. Argo shares the socket's
// folder (an emptyDir, mode 0777, private to the pod) between the plugin and
// clients of other uids (argoexec's wait/init as 8737, argo-server as 8737),
// so the socket takes the sharing of its folder: a folder others may enter and
// write means any uid may connect (0666); a folder the plugin had to create
// itself (a laptop, a shared host) gets no world access and the socket 0660.
// An explicit ARGO_S3_PLUGIN_SOCKET_MODE overrides both.
import { lstat, mkdir, stat, unlink } from "node:fs/promises";
import { type Server as NetServer, type Socket, createConnection, createServer } from "node:net";
import { dirname } from "node:path";
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import { listen } from "../util/listen.js";

export class SocketInUseError extends Error {}

/** Make the folder if needed and clear a dead socket; returns the mode the socket gets. */
export async function prepareSocket(path: string, explicitMode: number | undefined): Promise<number> {
  const dir = dirname(path);
  let shared = false;
  try {
    const st = await stat(dir);
    shared = (st.mode & 0o003) === 0o003;
  } catch {
    await mkdir(dir, { recursive: true, mode: 0o750 });
  }
  await clearStaleSocket(path);
  return explicitMode ?? (shared ? 0o666 : 0o660);
}

/** Remove a socket nobody answers on; refuse a live one and anything that is not a socket. */
async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a unix socket; refusing to replace it`);
  const answer = await probe(path);
  if (answer === "live") {
    throw new SocketInUseError(
      `${path}: another process is serving on this socket; refusing to take it over (stop that process first, or give this one another path)`,
    );
  }
  if (answer !== "dead")
    throw new Error(`${path}: cannot tell whether the socket is in use (${answer}); remove it if no plugin is running`);
  await unlink(path);
}

/** "live" when something accepts a connection, "dead" when nothing listens, else the error code. */
function probe(path: string): Promise<string> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    const done = (r: string) => {
      clearTimeout(timer);
      c.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done("live"), 2000); // a listener with a full backlog still counts as live
    c.once("connect", () => done("live"));
    c.once("error", (e: NodeJS.ErrnoException) =>
      done(e.code === "ECONNREFUSED" || e.code === "ENOENT" ? "dead" : (e.code ?? "error")),
    );
  });
}

/**
 * Serve gRPC on a unix socket through a listener of our own: bound here to
 * `path`, or bound and listening already (the launcher's descriptor). Every
 * accepted connection passes `admit` first, then goes to grpc-js as if it had
 * bound the socket itself.
 */
export async function serveOn(
  grpc: Server,
  where: { fd: number } | { path: string },
  admit: (socket: Socket) => boolean,
  onError: (e: Error) => void,
): Promise<NetServer> {
  const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
  const server = createServer((socket) => {
    if (admit(socket)) injector.injectConnection(socket);
  });
  await listen(server, { ...where, backlog: 511 }, onError);
  return server;
}
