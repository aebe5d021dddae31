/**
 * TurnShared: the callers of one turn of the event loop share one read, made after that turn; a caller of a later turn gets a
 * read of its own that began after it asked.
 */
import { describe, expect, it } from "vitest";
import { TurnShared } from "../../server/services/turn-shared.js";

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("TurnShared", () => {
  it("makes one read for every caller of a turn, after that turn, and gives each the same answer", async () => {
    const reads: string[] = [];
    const shared = new TurnShared(async (key) => {
      reads.push(key);
      return { key };
    });
    const answers = [shared.read("run-1"), shared.read("run-1"), shared.read("run-1")];
    expect(reads).toEqual([]); // not during the turn: a caller of this turn may still be subscribing
    const [a, b, c] = await Promise.all(answers);
    expect(reads).toEqual(["run-1"]);
    expect(a).toBe(b);
    expect(b).toBe(c);
  });

  it("reads each key apart", async () => {
    const reads: string[] = [];
    const shared = new TurnShared(async (key) => {
      reads.push(key);
      return key;
    });
    expect(await Promise.all([shared.read("a"), shared.read("b"), shared.read("a")])).toEqual(["a", "b", "a"]);
    expect(reads.sort()).toEqual(["a", "b"]);
  });

  it("gives a caller who asks once a read has begun a read of its own, which sees what changed before it asked", async () => {
    let version = 1;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const reads: number[] = [];
    const shared = new TurnShared(async () => {
      const seen = version;
      reads.push(seen);
      if (reads.length === 1) await held; // the first read is under way (it has seen version 1) when the change comes
      return seen;
    });
    const first = shared.read("run-1");
    await nextTurn();
    expect(reads).toEqual([1]);
    version = 2; // a change, then a new subscriber asks: it must not get the read that began before
    const second = shared.read("run-1");
    release();
    expect(await first).toBe(1);
    expect(await second).toBe(2);
    expect(reads).toEqual([1, 2]);
  });

  it("fails every caller of the turn with the read's error, and reads again for the next turn", async () => {
    let fail = true;
    const shared = new TurnShared(async () => {
      if (fail) throw new Error("no such run");
      return "tree";
    });
    const failures = await Promise.allSettled([shared.read("run-1"), shared.read("run-1")]);
    expect(failures.map((result) => result.status)).toEqual(["rejected", "rejected"]);
    fail = false;
    await expect(shared.read("run-1")).resolves.toBe("tree");
  });
});
