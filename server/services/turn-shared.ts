/**
 * A read that the callers of one turn of the event loop share: made once, after that turn, for every caller who asked during
 * it. Each caller's read therefore begins after it asked, as a read of its own would: a subscriber that subscribed to changes
 * before it asked misses no change made between the read and its subscription. A caller of a later turn starts the next read.
 * The answer is shared between callers: read-only.
 */
export class TurnShared<T> {
  private readonly next = new Map<string, Promise<T>>();

  constructor(private readonly load: (key: string) => Promise<T>) {}

  read(key: string): Promise<T> {
    let value = this.next.get(key);
    if (!value) {
      value = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        // From here on a caller waits for the next read: this one may already have seen the rows it would need.
        this.next.delete(key);
        return this.load(key);
      });
      this.next.set(key, value);
    }
    return value;
  }
}
