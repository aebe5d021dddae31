import { pipeline, type Readable, type Transform, type Writable } from "node:stream";

/**
 * Chains streams as `stream.pipeline` does and returns the last one: an error anywhere destroys the whole chain, and whoever
 * consumes the last stream sees it. Once the chain has torn down, Node's pipeline no longer listens to its streams, yet one
 * may still emit an error (a transform's flush after its input was cut): with no listener that would be an uncaught
 * exception that kills the process. Those late errors are dropped on purpose: the first error already failed the chain.
 */
export function chainStreams<Last extends Readable | Transform>(source: Readable, ...rest: [...(Transform | Writable)[], Last]): Last {
  const last = pipeline(source, ...(rest as unknown as [Transform]), () => undefined) as unknown as Last;
  for (const stream of [source, ...rest]) stream.on("error", () => undefined);
  return last;
}
