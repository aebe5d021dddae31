import type { Logger } from "../log.js";
import type { Principal } from "../domain/principal.js";
import type { Services } from "../services/services.js";

/** What every resolver receives: who is calling, and the services. */
export interface GraphQLContext {
  principal?: Principal;
  services: Services;
  log: Logger;
}
