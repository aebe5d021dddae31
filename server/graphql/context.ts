import type { Logger } from "../log.js";
import type { Principal } from "../domain/principal.js";
import type { Services } from "../services/services.js";

/** What every resolver receives: who is calling, and the services. */
export interface GraphQLContext {
  principal?: Principal;
  services: Services;
  log: Logger;
  /** The caller's address (the TCP peer): recorded in the audit log and used to throttle sign-in attempts. */
  clientAddress?: string;
  /**
   * When the operation arrived (`performance.now()`): answers kept in memory hold every change committed before it (see
   * ConfigurationCache). None for a subscription, whose context serves many events: each read then checks as of itself.
   */
  receivedAt?: number;
  /** Which transport carried the operation. */
  transport: "HTTP" | "WS";
}
