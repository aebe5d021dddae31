/**
 * How fast a run or a task moves its bytes, and when it should end: read from what is recorded (bytes so far, progress,
 * start), at the moment it is read. One model for the run, each VM and each transfer, so the figures agree wherever they
 * are shown: speed = bytes / elapsed; time left = elapsed x (1 - progress) / progress, progress being bytes done over bytes
 * expected for the tasks that move data.
 */

export interface Pace {
  /** Bytes per second over the whole time so far (to its end once ended); null before any byte or any time. */
  bytesPerSecond: number | null;
  /** Seconds left while running with 0 < progress < 1; null otherwise (not started, ended, or no progress yet). */
  etaSeconds: number | null;
}

export function paceOf(figures: {
  bytes: number | null;
  progress: number;
  startedAt: Date | null;
  endedAt: Date | null;
  running: boolean;
  now?: Date;
}): Pace {
  const { bytes, progress, startedAt, endedAt, running } = figures;
  if (!startedAt) return { bytesPerSecond: null, etaSeconds: null };
  const elapsedSeconds = ((endedAt ?? figures.now ?? new Date()).getTime() - startedAt.getTime()) / 1000;
  const bytesPerSecond = bytes && bytes > 0 && elapsedSeconds > 0 ? bytes / elapsedSeconds : null;
  const etaSeconds =
    running && !endedAt && progress > 0 && progress < 1 && elapsedSeconds > 0
      ? Math.max(0, Math.round((elapsedSeconds * (1 - progress)) / progress))
      : null;
  return { bytesPerSecond, etaSeconds };
}
