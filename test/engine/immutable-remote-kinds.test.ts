/**
 * Which kinds can be immutable, through the API against the real peers (test/support/remote-peers.ts): NFS and SMB are
 * refused whatever the server (the server decides there, Cairn cannot make files immutable over NFS/SMB); S3 needs Object
 * Lock on the bucket, which s3rver does not have, so createRemote, updateRemote and testRemote refuse it saying so. The
 * same remotes are accepted with no window. (The positive S3 path needs a server with Object Lock: not available here.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestCairn, type TestCairn } from "../support/cairn-server.js";
import { peerSkipReason, startRemotePeer, type RemoteKindName, type RemotePeer } from "../support/remote-peers.js";
import { stopAll } from "../support/stop-all.js";

const CREATE = `mutation($input: RemoteInput!) { createRemote(input: $input) { id immutabilityDays } }`;
const UPDATE = `mutation($id: ID!, $input: RemoteInput!) { updateRemote(id: $id, input: $input) { id immutabilityDays } }`;
const TEST = `mutation($id: ID!) { testRemote(id: $id) { ok error } }`;

const KINDS: RemoteKindName[] = ["NFS", "SMB", "S3"];

describe("immutability windows refused where the remote cannot keep them", () => {
  let server: TestCairn;
  let token: string;
  const peers = new Map<RemoteKindName, RemotePeer>();

  beforeAll(async () => {
    server = await startTestCairn();
    token = await server.login();
  }, 120_000);

  afterAll(() => stopAll(...[...peers.values()].map((peer) => () => peer.stop()), () => server?.stop()));

  for (const kind of KINDS) {
    describe.skipIf(peerSkipReason(kind))(kind, () => {
      it(`refuses a window on ${kind} at creation and at update, and keeps the remote as it was`, async () => {
        const peer = await startRemotePeer(kind);
        peers.set(kind, peer);
        const input = peer.input(`immutable-${kind.toLowerCase()}`);
        const expected =
          kind === "S3"
            ? /Remote immutable-s3 cannot keep backups immutable: the bucket \S+ does not have Object Lock enabled: create it with Object Lock on/
            : /the server decides; Cairn cannot make files immutable over NFS\/SMB/;

        const refused = await server.graphql(CREATE, { input: { ...input, immutabilityDays: 30 } }, token);
        expect(refused.errors?.[0]?.message, JSON.stringify(refused.errors)).toMatch(expected);
        expect(refused.errors?.[0]?.extensions?.field).toBe("input.immutabilityDays");

        const created = await server.graphql(CREATE, { input }, token);
        expect(created.errors, JSON.stringify(created.errors)).toBeUndefined();
        expect(created.data.createRemote.immutabilityDays).toBe(0);
        const id = created.data.createRemote.id as string;

        const update = await server.graphql(UPDATE, { id, input: { ...input, immutabilityDays: 7 } }, token);
        expect(update.errors?.[0]?.message, JSON.stringify(update.errors)).toMatch(expected);
        // Omitted on update: unchanged (0 here), and the update goes through.
        const kept = await server.graphql(UPDATE, { id, input }, token);
        expect(kept.errors, JSON.stringify(kept.errors)).toBeUndefined();
        expect(kept.data.updateRemote.immutabilityDays).toBe(0);
      }, 180_000);
    });
  }

  it.skipIf(peerSkipReason("S3"))(
    "testRemote of an S3 remote stored with a window says its bucket has no Object Lock",
    async () => {
      const peer = peers.get("S3") ?? (await startRemotePeer("S3"));
      peers.set("S3", peer);
      const created = await server.graphql(CREATE, { input: peer.input("s3-lock-lost") }, token);
      expect(created.errors, JSON.stringify(created.errors)).toBeUndefined();
      const id = created.data.createRemote.id as string;
      // As stored by a Cairn that saw Object Lock on (a bucket since replaced by one without): set in the database directly.
      const { createPrismaClient } = await import("../../server/db/prisma.js");
      const db = createPrismaClient(server.database.url);
      try {
        await db.remote.update({ where: { id }, data: { immutabilityDays: 14 } });
      } finally {
        await db.$disconnect();
      }
      const tested = await server.graphql(TEST, { id }, token);
      expect(tested.errors, JSON.stringify(tested.errors)).toBeUndefined();
      expect(tested.data.testRemote.ok).toBe(false);
      expect(tested.data.testRemote.error).toMatch(
        /Remote s3-lock-lost cannot keep backups immutable: the bucket \S+ does not have Object Lock enabled: create it with Object Lock on/,
      );
    },
    120_000,
  );
});
