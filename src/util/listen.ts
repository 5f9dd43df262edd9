// Start a server listening: a failure to listen rejects (the caller says what
// to do), and errors after that (EMFILE on accept, ...) go to `onError`
// instead of ending the process.
import type { ListenOptions, Server } from "node:net";

export function listen(server: Server, options: ListenOptions, onError: (e: Error) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, () => {
      server.off("error", reject);
      server.on("error", onError);
      resolve();
    });
  });
}
