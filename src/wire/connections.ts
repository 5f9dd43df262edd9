// The plugin's clients and their connections. argo-server dials the shared
// sidecar anew for every UI request and never closes a connection
// (workflow/artifacts/artifacts.go → plugin.NewDriver, v4.0 and v4.1), and an
// idle HTTP/2 session costs ~20 KiB and a descriptor here: over days they
// would take the process's memory and descriptors. So a session with no call
// for `idleMs` is closed (grpc-js' max_connection_idle), and at most `max`
// connections are open: a new one past that closes the connection that has
// been idle longest; only when every connection has a call in flight is the
// new one refused. One author's flood cannot keep another's call from a
// connection, nor grow the process.
import type { ServerHttp2Session } from "node:http2";
import type { Socket } from "node:net";

const kUse = Symbol("argo-s3-plugin.connection-use");

interface Use {
  /** Calls in flight on the connection. */
  calls: number;
  /** When it last started or ended a call (or was accepted). */
  lastUsed: number;
}

type Tracked = Socket & { [kUse]?: Use };

export interface ConnectionLimits {
  /** Open client connections at most. */
  max: number;
  /** A connection with no call for this long is closed; undefined: kept (a workflow pod's, see client-gone.ts). */
  idleMs: number | undefined;
}

export const CONNECTION_LIMITS: ConnectionLimits = { max: 512, idleMs: 120_000 };

export class ClientConnections {
  private readonly open = new Set<Tracked>();

  constructor(
    private readonly max: number,
    /** Told of every connection served and of its end. */
    private readonly observer?: { opened(): void; closed(): void },
  ) {}

  /** A new connection: true to serve it (room made if needed), false when it was closed. */
  admit(socket: Socket): boolean {
    if (this.open.size >= this.max && !this.evictIdlest()) {
      socket.destroy();
      return false;
    }
    const s = socket as Tracked;
    s[kUse] = { calls: 0, lastUsed: Date.now() };
    this.open.add(s);
    this.observer?.opened();
    s.once("close", () => {
      this.open.delete(s);
      this.observer?.closed();
    });
    return true;
  }

  /** Follow a session's calls (the http2 server's "session" event; its socket is the admitted one behind a proxy). */
  watch(session: ServerHttp2Session): void {
    const use = (session.socket as Tracked | undefined)?.[kUse];
    if (!use) return;
    session.on("stream", (stream: { once(e: "close", f: () => void): unknown }) => {
      use.calls++;
      use.lastUsed = Date.now();
      stream.once("close", () => {
        use.calls--;
        use.lastUsed = Date.now();
      });
    });
  }

  private evictIdlest(): boolean {
    let idlest: Tracked | undefined;
    for (const s of this.open) {
      const use = s[kUse]!;
      if (use.calls === 0 && (!idlest || use.lastUsed < idlest[kUse]!.lastUsed)) idlest = s;
    }
    if (!idlest) return false;
    this.open.delete(idlest);
    idlest.destroy();
    return true;
  }
}
