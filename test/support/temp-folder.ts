import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, onTestFinished } from "vitest";

/**
 * Folders made outside a test (a describe body, a beforeAll), removed after the tests of the file that imports this
 * module (each test file has its own module graph). Vitest runs no afterAll registered from inside a test or a hook: helpers
 * that did so left a folder per call behind, 4.7 GB per run of the suite.
 */
const madeOutsideTests = new Set<string>();
afterAll(async () => {
  await Promise.all([...madeOutsideTests].map((dir) => rm(dir, { recursive: true, force: true })));
  madeOutsideTests.clear();
});

/** A fresh temporary folder, removed when the test that made it finishes, or, made outside a test, after the file's tests. */
export async function tempFolder(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
  } catch {
    // Not inside a test (onTestFinished refuses): the file's end is the folder's end.
    madeOutsideTests.add(dir);
  }
  return dir;
}
