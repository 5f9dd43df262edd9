// A workflow pod's plugin sidecar ends when argoexec's wait container, done
// saving, writes the stop into the sidecar's signal file. A wait container that
// dies first (OOM-killed, evicted, crashed) never writes it, and the wrapper
// around the plugin ignores the controller's SIGTERM (argoexec
// artifact-plugin-sidecar), so the pod would stay Running for good. The plugin
// cannot see the wait process, but it sees its connections: argoexec opens one
// per artifact and never closes it (workflow/artifacts/plugin.NewDriver, no
// Close), so they end when the process does, or after grpc-go's 30 min idle
// timeout. Once a Save has been served, no connection and no call for `ms`
// means the saving client is gone: leave.
//
// Only Save and SaveStream arm it: before the first Save, the connections that
// come and go are Loads (v4.1's init-less supervisor loads before main runs,
// possibly for hours, and saves after).
const SAVES = new Set(["Save", "SaveStream"]);

export class ClientGoneWatch {
  private armed = false;
  private timer: NodeJS.Timeout | undefined;
  private connections = 0;
  private calls = 0;

  constructor(
    private readonly ms: number,
    private readonly leave: () => void,
  ) {}

  connectionOpened(): void {
    this.connections++;
    this.check();
  }

  connectionClosed(): void {
    this.connections--;
    this.check();
  }

  callStarted(method: string): void {
    if (SAVES.has(method)) this.armed = true;
    this.calls++;
    this.check();
  }

  callEnded(): void {
    this.calls--;
    this.check();
  }

  /** Stop watching (shutdown under way). */
  stop(): void {
    this.armed = false;
    this.check();
  }

  private check(): void {
    const gone = this.armed && this.connections <= 0 && this.calls <= 0;
    if (!gone) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.armed = false;
        this.leave();
      }, this.ms);
      // The listening socket keeps the process alive; this timer need not.
      this.timer.unref();
    }
  }
}
