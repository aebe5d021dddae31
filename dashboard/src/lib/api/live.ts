/**
 * The app's graphql-ws client for live updates, provided by the signed-in layout; null where live updates are not
 * available (tests that render a page without a server pass none, and pages then show what they loaded).
 */
import { createContext } from "svelte";
import type { Client } from "graphql-ws";

export const [getLiveClient, setLiveClient] = createContext<Client | null>();
