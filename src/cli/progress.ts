// One self-rewriting status line on stderr while a transfer runs: bytes, rate
// and, when the total is known, percentage and ETA. Only on a terminal: in a
// pipe, a log or CI, the CLI stays quiet so its stderr holds nothing but errors.

/** The bits of a stream the progress line needs (process.stderr fits). */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): boolean;
}

export interface ProgressOptions {
  /** Total bytes when known (from stat for a save); omit when unknown. */
  total?: number;
  /** Extra text after the label, e.g. "3 files". */
  note?: string;
  /** Whether to draw at all; defaults to `stream.isTTY`. */
  enabled?: boolean;
  stream?: ProgressStream;
  /** Clock in ms, for tests. */
  now?: () => number;
  /** Redraw period, so the elapsed time moves even while no bytes arrive. */
  tickMs?: number;
}

/** Rate over the last few seconds: steadier than per-tick, fresher than the whole run. */
const RATE_WINDOW_MS = 3000;

export class Progress {
  private readonly stream: ProgressStream;
  private readonly enabled: boolean;
  private readonly now: () => number;
  private readonly started: number;
  private readonly samples: { t: number; bytes: number }[] = [];
  private bytes = 0;
  private known = false;
  private timer: NodeJS.Timeout | undefined;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly opts: ProgressOptions = {},
  ) {
    this.stream = opts.stream ?? process.stderr;
    this.enabled = opts.enabled ?? this.stream.isTTY === true;
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    this.samples.push({ t: this.started, bytes: 0 });
    if (this.enabled) {
      this.timer = setInterval(() => this.draw(), opts.tickMs ?? 250);
      this.timer.unref();
    }
  }

  /** Bytes transferred so far (absolute, not a delta). */
  set(bytes: number): void {
    this.bytes = bytes;
    this.known = true;
    const t = this.now();
    this.samples.push({ t, bytes });
    while (this.samples.length > 2 && t - this.samples[0]!.t > RATE_WINDOW_MS) this.samples.shift();
  }

  add(delta: number): void {
    this.set(this.bytes + delta);
  }

  /** The current status line (without terminal control codes). */
  line(): string {
    const elapsedMs = this.now() - this.started;
    const parts = [this.label];
    if (this.opts.note) parts.push(this.opts.note);
    const total = this.opts.total;
    if (this.known) {
      const rate = this.rate(elapsedMs);
      if (total !== undefined && total > 0) {
        const pct = Math.min(100, Math.floor((this.bytes / total) * 100));
        parts.push(`${formatBytes(this.bytes)} / ${formatBytes(total)}`, `${pct}%`);
        if (rate > 0) parts.push(`${formatBytes(rate)}/s`);
        const left = total - this.bytes;
        parts.push(left <= 0 ? "finishing" : rate > 0 ? `ETA ${formatDuration((left / rate) * 1000)}` : "ETA --:--");
      } else {
        parts.push(formatBytes(this.bytes));
        if (rate > 0) parts.push(`${formatBytes(rate)}/s`);
      }
    } else if (total !== undefined) {
      parts.push(formatBytes(total));
    }
    parts.push(`${formatDuration(elapsedMs)} elapsed`);
    return parts.join("  ");
  }

  /** Erase the line and stop redrawing; `summary` (terminal only) replaces it. */
  finish(summary?: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!this.enabled) return;
    if (this.drawn) this.stream.write("\r\x1b[K");
    this.drawn = false;
    if (summary) this.stream.write(`${summary}\n`);
  }

  /** "<verb> <what>: 12 MiB in 3.1 s (3.9 MiB/s)" for the final line. */
  summary(verb: string, bytes = this.bytes): string {
    const ms = Math.max(1, this.now() - this.started);
    const rate = bytes > 0 ? `, ${formatBytes(bytes / (ms / 1000))}/s` : "";
    return `${verb}: ${formatBytes(bytes)} in ${formatDuration(ms, true)}${rate}`;
  }

  private rate(elapsedMs: number): number {
    const first = this.samples[0]!;
    const last = this.samples[this.samples.length - 1]!;
    const dt = last.t - first.t;
    if (dt >= 500) return ((last.bytes - first.bytes) / dt) * 1000;
    return elapsedMs >= 500 ? (this.bytes / elapsedMs) * 1000 : 0;
  }

  private draw(): void {
    // One column short of the width: a full-width line would wrap and break "\r".
    const width = Math.max(20, (this.stream.columns ?? 80) - 1);
    let text = this.line();
    if (text.length > width) text = `${text.slice(0, width - 1)}…`;
    this.stream.write(`\r\x1b[K${text}`);
    this.drawn = true;
  }
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${Math.round(v)} B`;
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${UNITS[i]}`;
}

/** m:ss (h:mm:ss past an hour); `precise` gives "1.2 s" below a minute for summaries. */
export function formatDuration(ms: number, precise = false): string {
  if (precise && ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
