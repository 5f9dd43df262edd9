// The installed package's root, where package.json and proto/ are: the parent
// of this module's folder. That is dist/ both in tsc's output (dist/package-root.js)
// and in the bundle the image runs (dist/main.cjs, scripts/bundle.mjs), so keep
// this file directly under src/.
import { fileURLToPath } from "node:url";

export const PACKAGE_ROOT = fileURLToPath(new URL("..", import.meta.url));
