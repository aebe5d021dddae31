import { Arg, Authorized, Ctx, Int, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { AuditEntry, AuditEntryConnection, AuditLogFilter } from "../types/audit.js";
import { Role } from "../types/enums.js";

@Resolver(() => AuditEntry)
export class AuditResolver {
  @Authorized(Role.ADMIN)
  @Query(() => AuditEntryConnection, { description: "Every mutation recorded (kept AUDIT_RETENTION_DAYS), newest first. ADMIN only." })
  auditLog(
    @Arg("filter", () => AuditLogFilter, { nullable: true }) filter: AuditLogFilter | null,
    @Arg("first", () => Int, { nullable: true }) first: number | null,
    @Arg("after", () => String, { nullable: true }) after: string | null,
    @Ctx() { services }: GraphQLContext,
  ) {
    return services.audit.list(filter ?? {}, { first, after });
  }
}
