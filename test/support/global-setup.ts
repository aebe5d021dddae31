// Filled in by the foundation: starts one PostgreSQL for the whole run (see test/support/postgres.ts).
export default async function setup(): Promise<void> {}
