import type { Faults } from "./faults.js";

/**
 * Applies `import_bytes_per_second` to an import body (`/import`, `/import_raw_vdi`): the body is read at most `rate`
 * bytes per second, so the client's upload is held back by TCP backpressure, as by a slow SR. The rate is read when the
 * import starts. Without the fault the body is returned as it is.
 */
export function pacedImportBody(faults: Faults, body: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  const rate = faults.state.importBytesPerSecond;
  if (rate === undefined) return body;
  return (async function* paced() {
    const started = Date.now();
    let received = 0;
    for await (const chunk of body) {
      received += chunk.length;
      // Rate limiting is the one place the lab waits on time: the pace is the fault.
      const wait = started + (received / rate) * 1000 - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      yield chunk;
    }
  })();
}
