import type { Remote } from "../remotes/remote.js";
import { temporaryPathFor } from "../remotes/remote-path.js";

/**
 * The remote's own time: the modification time the storage gives a file written now. File ages (is this leftover old
 * enough to delete?) are judged against it, never against this machine's clock, so a host whose clock runs ahead cannot
 * take a file another process is still writing for an old leftover. The probe has a temporary name, so a crash between
 * its write and its delete leaves something the cleaner removes.
 */
export async function remoteNow(remote: Remote, dir: string): Promise<Date> {
  const probe = temporaryPathFor(`${dir}/cairn-clock`);
  await remote.writeFile(probe, "");
  try {
    return (await remote.stat(probe)).mtime;
  } finally {
    // A probe left behind keeps its temporary name, which the cleaner removes; the time read is what matters here.
    await remote.delete(probe).catch(() => undefined);
  }
}
