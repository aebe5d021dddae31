import { tempFolder } from "../../support/temp-folder.js";

/** A fresh temporary folder, removed after the test that made it, or after the file's tests when made outside one. */
export function tempDir(prefix = "cairn-formats-"): Promise<string> {
  return tempFolder(prefix);
}
