// A typed event on a node:diagnostics_channel: publishers do no work while no
// one subscribes, and a subscriber that throws loses that event and nothing
// else (a channel rethrows a subscriber's error on the next tick, where it
// would end the process). The wire's RpcEnded and the S3 layer's
// S3RequestEnded are two of these.
import { channel } from "node:diagnostics_channel";

export interface TypedChannel<T> {
  /** Whether anyone listens: callers skip building the event when no one does. */
  observed(): boolean;
  publish(e: T): void;
  /** Calls `fn` for every event from now on; returns the unsubscribe. */
  subscribe(fn: (e: T) => void): () => void;
}

export function typedChannel<T>(name: string): TypedChannel<T> {
  const ch = channel(name);
  return {
    observed: () => ch.hasSubscribers,
    publish: (e) => {
      if (ch.hasSubscribers) ch.publish(e);
    },
    subscribe: (fn) => {
      const listener = (m: unknown) => {
        try {
          fn(m as T);
        } catch {
          // observability must not take the RPC or data path down
        }
      };
      ch.subscribe(listener);
      return () => ch.unsubscribe(listener);
    },
  };
}
