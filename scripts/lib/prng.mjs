// @ts-check
/**
 * mulberry32: a small deterministic PRNG, so a fuzz run or a load mix is the
 * same on every run.
 * @param {number} seed
 * @returns {() => number} values in [0, 1)
 */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
