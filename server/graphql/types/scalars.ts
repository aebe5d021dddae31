/** The API's scalars (API.md "Conventions"): DateTime (ISO 8601, UTC), SafeInt (byte counts), JSON. */
export { DateTimeResolver as DateTimeScalar, JSONResolver as JSONScalar, SafeIntResolver as SafeIntScalar } from "graphql-scalars";
