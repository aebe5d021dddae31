import { Transform, type TransformCallback } from "node:stream";
import type { Faults } from "./faults.js";
import { XapiFailure } from "./xapi-failure.js";

/**
 * Applies the export faults to a body stream: `export_drop_after_bytes` (passes N bytes, then errors so
 * the connection is cut) and `export_bytes_per_second` (paces chunks; backpressure is kept because a
 * chunk is only acknowledged once it may be sent).
 */
export function exportFaultStream(faults: Faults): Transform {
  const dropAfter = faults.state.exportDropAfterBytes;
  const rate = faults.state.exportBytesPerSecond;
  let sent = 0;
  const started = Date.now();
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      let data = chunk;
      let drop = false;
      if (dropAfter !== undefined && sent + data.length >= dropAfter) {
        data = data.subarray(0, dropAfter - sent);
        drop = true;
      }
      sent += data.length;
      const send = () => {
        if (data.length > 0) this.push(data);
        if (drop)
          callback(new XapiFailure("VDI_IO_ERROR", [`lab fault export_drop_after_bytes: connection dropped after ${dropAfter} bytes`]));
        else callback();
      };
      if (rate === undefined) return send();
      // Rate limiting is the one place the lab waits on time: the pace is the fault.
      const due = started + (sent / rate) * 1000;
      const wait = due - Date.now();
      if (wait <= 0) send();
      else setTimeout(send, wait);
    },
  });
}
