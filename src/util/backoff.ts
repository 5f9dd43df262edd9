// The pause before the n-th retry of one request: exponential from 200 ms, capped at 2 s.
export function backoff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** attempt)));
}
