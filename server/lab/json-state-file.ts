import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * A JSON file written atomically (temporary file, then rename) and at most once at a time: `schedule()`
 * coalesces bursts of changes into one write; `flush()` waits until what was scheduled is on disk.
 */
export class JsonStateFile<T> {
  private pending = false;
  private writing: Promise<void> = Promise.resolve();
  private lastError: unknown;

  constructor(
    readonly path: string,
    private readonly produce: () => T,
  ) {}

  async read(): Promise<T | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new Error(`lab state file ${this.path} is not valid JSON (delete it to start afresh)`, { cause: error });
    }
  }

  schedule(): void {
    if (this.pending) return;
    this.pending = true;
    this.writing = this.writing
      .then(async () => {
        this.pending = false;
        const temporary = `${this.path}.tmp`;
        await mkdir(dirname(this.path), { recursive: true });
        await writeFile(temporary, JSON.stringify(this.produce()));
        await rename(temporary, this.path);
      })
      .catch((error: unknown) => {
        // Kept and rethrown by flush(): the next scheduled write may still succeed.
        this.lastError = error;
      });
  }

  async flush(): Promise<void> {
    while (true) {
      const current = this.writing;
      await current;
      if (current === this.writing && !this.pending) break;
    }
    if (this.lastError !== undefined) {
      const error = this.lastError;
      this.lastError = undefined;
      throw new Error(`could not write lab state file ${this.path}`, { cause: error });
    }
  }
}
