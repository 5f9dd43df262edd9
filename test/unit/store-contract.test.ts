// The store port's contract (test/support/store-contract.ts) against the
// in-memory store the engine's unit tests use, so that what those tests
// prove holds for a store that answers as S3 does (the same suite runs
// against MinIO in test/integration/store-contract.test.ts).
import { MemoryStore } from "../support/memory-store.js";
import { storeContract } from "../support/store-contract.js";

const store = new MemoryStore();
storeContract("memory", () => store);
