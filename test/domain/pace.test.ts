/** The one pace model of runs and tasks: speed over the time so far, time left from progress, nothing made up. */
import { describe, expect, it } from "vitest";
import { paceOf } from "../../server/domain/pace.js";

const startedAt = new Date("2026-12-03T10:00:00Z");
const at = (seconds: number) => new Date(startedAt.getTime() + seconds * 1000);

describe("the pace of a run or a task", () => {
  it("gives the speed over the time so far, and the time left from the progress, while it runs", () => {
    expect(paceOf({ bytes: 300 * 2 ** 20, progress: 0.25, startedAt, endedAt: null, running: true, now: at(30) })).toEqual({
      bytesPerSecond: 10 * 2 ** 20,
      etaSeconds: 90,
    });
  });

  it("keeps the speed over the whole run once it ended, and gives no time left", () => {
    expect(paceOf({ bytes: 1000, progress: 1, startedAt, endedAt: at(4), running: false, now: at(100) })).toEqual({
      bytesPerSecond: 250,
      etaSeconds: null,
    });
  });

  it("says nothing it cannot know: not started, no byte, no progress yet", () => {
    expect(paceOf({ bytes: 100, progress: 0.5, startedAt: null, endedAt: null, running: true })).toEqual({
      bytesPerSecond: null,
      etaSeconds: null,
    });
    expect(paceOf({ bytes: 0, progress: 0, startedAt, endedAt: null, running: true, now: at(5) })).toEqual({
      bytesPerSecond: null,
      etaSeconds: null,
    });
    expect(paceOf({ bytes: null, progress: 0.5, startedAt, endedAt: null, running: true, now: at(10) })).toEqual({
      bytesPerSecond: null,
      etaSeconds: 10,
    });
  });
});
