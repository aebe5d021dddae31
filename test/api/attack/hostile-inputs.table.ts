/**
 * The hostile inputs thrown at the running server by hostile-inputs.test.ts, one row each: what is sent, by whom, and
 * which answers are acceptable. An answer is an error code (`extensions.code`), or DATA for "served normally" where a
 * hostile-looking value is in fact legitimate (a search for `' OR 1=1 --` finds nothing, it is not an attack on anything).
 *
 * Rows are GraphQL operations (sent over HTTP, and over graphql-ws unless `ws: false`: rows that create objects run once,
 * so that a second run is not a name CONFLICT), raw HTTP bodies (batching, invalid JSON, content types, sizes), and raw
 * graphql-ws frames.
 */
export type Caller = "anonymous" | "VIEWER" | "OPERATOR" | "ADMIN";
/** An `extensions.code`, or DATA: no error and the operation's data. */
export type Outcome = string;
export const DATA = "DATA";

export interface GraphQLRow {
  kind: "graphql";
  name: string;
  query: string;
  variables?: Record<string, unknown>;
  /** Variables as JSON text (values too deep for JSON.stringify). */
  variablesJson?: string;
  operationName?: string;
  extensions?: Record<string, unknown>;
  caller: Caller;
  expect: Outcome[];
  /** The `extensions.field` a BAD_USER_INPUT must name (when the row proves a specific check). */
  field?: RegExp;
  /** Also over graphql-ws. @default true */
  ws?: boolean;
  /** For DATA: what the data must satisfy (a message when it does not). */
  checkData?: (data: Record<string, unknown>) => string | undefined;
}

export interface HttpRow {
  kind: "http";
  name: string;
  body: string | Uint8Array;
  headers?: Record<string, string>;
  caller: Caller;
  expect: Outcome[];
  /** The HTTP statuses allowed (a client error, never a 5xx). @default 400-499 */
  status?: number[];
}

export interface WsRow {
  kind: "ws";
  name: string;
  /** Frames sent after connection_ack instead of a subscribe. */
  frames: (string | Buffer)[];
  caller: Caller;
  /** graphql-ws close codes that are a clear answer (4400: invalid message; 1009: too big). */
  closeCodes?: number[];
  expect?: Outcome[];
}

export type Row = GraphQLRow | HttpRow | WsRow;

/** What the table needs from the running server. */
export interface HostileContext {
  /** A folder that exists and is writable (a valid LOCAL remote location). */
  remoteDir: string;
  /** A symlink inside the data dir that points at a folder outside it. */
  symlinkOut: string;
  /** Where `symlinkOut` points. */
  symlinkTarget: string;
  /** A valid job's id. */
  jobId: string;
  /** A unique suffix per call. */
  unique(): string;
}

const INPUT = ["BAD_USER_INPUT"];
const REQUEST = ["GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT", "BAD_REQUEST", "OPERATION_RESOLUTION_FAILURE"];
const VALIDATION = ["GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"];
const PARSE = ["GRAPHQL_PARSE_FAILED", "BAD_USER_INPUT", "BAD_REQUEST"];
const SIGN_IN_REFUSED = ["UNAUTHENTICATED", "BAD_USER_INPUT", "RATE_LIMITED"];
const MISSING = ["NOT_FOUND", "BAD_USER_INPUT"];
const FORGIVING = [DATA, "BAD_USER_INPUT"];

const MB = 1024 * 1024;

/** Strings that have broken servers: control characters, unicode edges, SQL, shell, paths, sizes. */
export const HOSTILE_STRINGS: [string, string][] = [
  ["empty", ""],
  ["blank", "   \t  "],
  ["a NUL byte", "a\u0000b"],
  ["only NUL", "\u0000"],
  ["C0 controls", "\u0001\u0002\u0007\u001b[31m\u007f"],
  ["CR LF injection", "x\r\nSet-Cookie: a=b"],
  ["a lone high surrogate", "x\ud800y"],
  ["a lone low surrogate", "\udc00"],
  ["right-to-left override", "abc\u202edcba"],
  ["zero-width joiners", "a\u200b\u200c\u200d\u2060b"],
  ["a byte order mark", "\ufeffname"],
  ["noncharacters", "\ufffe\uffff"],
  ["emoji with modifiers", "👩🏽‍💻🏳️‍🌈"],
  ["1000 combining marks", `e${"\u0301".repeat(1000)}`],
  ["full-width slashes", "／etc／passwd"],
  ["a Cyrillic homoglyph of admin", "аdmin"],
  ["SQL tautology", "' OR '1'='1' --"],
  ["SQL drop", '\'; DROP TABLE "Job"; --'],
  ["SQL union", '\' UNION SELECT "passwordHash" FROM "User" --'],
  ["LIKE wildcards", "%_%\\"],
  ["a Postgres placeholder", "$1::text"],
  ["shell substitution", "$(reboot)"],
  ["shell backticks", "`id`"],
  ["shell chain", "; rm -rf / #"],
  ["path traversal", "../../../../etc/passwd"],
  ["windows traversal", "..\\..\\windows\\system32"],
  ["encoded traversal", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"],
  ["proc environ", "/proc/self/environ"],
  ["a file URL", "file:///etc/passwd"],
  ["a format string", "%s%s%s%n%x"],
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the placeholder is the attack
  ["template injection", "{{7*7}}${7*7}<%= 7*7 %>"],
  ["HTML", "<script>alert(1)</script><img src=x onerror=alert(1)>"],
  ["JSON in a string", '{"$gt": ""}'],
  ["10 KB", "k".repeat(10 * 1024)],
  ["900 KB", "m".repeat(900 * 1024)],
];

const jobInput = (name: string, extra: Record<string, unknown> = {}, schedule: Record<string, unknown> = {}) => ({
  name,
  mode: "ROLLING_SNAPSHOT",
  enabled: false,
  selection: { smart: { tagsAll: ["attack"] } },
  schedules: [{ cron: "0 2 * * *", snapshotRetention: 1, ...schedule }],
  ...extra,
});

const CREATE_JOB = "mutation($input: JobInput!) { createJob(input: $input) { id name } }";
const CREATE_REMOTE = "mutation($input: RemoteInput!) { createRemote(input: $input) { id location } }";
const CONNECT_POOL = "mutation($input: PoolInput!) { connectPool(input: $input) { id } }";
const RUNS_AFTER = "query($after: String, $first: Int) { runs(first: $first, after: $after) { totalCount } }";

/** `{ vms { pool { vms { pool ... } } } }`, `pairs` times vms+pool. */
function vmsPoolNesting(pairs: number): string {
  return `{ ${"vms { uuid pool { ".repeat(pairs)}id${" } }".repeat(pairs)} }`;
}

export function hostileRows(ctx: HostileContext): Row[] {
  const rows: Row[] = [];
  const gql = (row: Omit<GraphQLRow, "kind">) => rows.push({ kind: "graphql", ...row });

  // --- Hostile strings in every kind of string sink -------------------------------------------------------------------
  for (const [what, value] of HOSTILE_STRINGS) {
    gql({
      name: `job name: ${what}`,
      query: CREATE_JOB,
      variables: { input: jobInput(value) },
      caller: "ADMIN",
      expect: FORGIVING,
      field: /^input\.name$/,
      ws: false,
    });
    gql({
      name: `API token name: ${what}`,
      query: "mutation($n: String!) { createApiToken(name: $n, role: VIEWER) { id name } }",
      variables: { n: value },
      caller: "ADMIN",
      expect: FORGIVING,
      field: /^name$/,
      ws: false,
    });
    gql({
      name: `runs search: ${what}`,
      query: "query($s: String) { runs(filter: { search: $s }) { totalCount } }",
      variables: { s: value },
      caller: "VIEWER",
      expect: FORGIVING,
      field: /^filter\.search$/,
    });
    gql({
      name: `sign-in user name: ${what}`,
      query: 'mutation($u: String!) { login(username: $u, password: "not the password") { token } }',
      variables: { u: value },
      caller: "anonymous",
      expect: SIGN_IN_REFUSED,
    });
  }

  // --- Ids that are not ids ---------------------------------------------------------------------------------------------
  const badIds: [string, unknown][] = [
    ["empty", ""],
    ["a number as text", "42"],
    ["negative", "-1"],
    ["the nil uuid", "00000000-0000-0000-0000-000000000000"],
    ["a uuid with a NUL", "6f1c2b9e-0000-4000-8000-00000000000\u0000"],
    ["SQL", "1' OR '1'='1"],
    ["a traversal", "../../etc/passwd"],
    ["100 KB", "9".repeat(100 * 1024)],
    ["an upper-case uuid of nothing", "6F1C2B9E-1111-4111-8111-111111111111"],
    ["a uuid with braces", "{6f1c2b9e-1111-4111-8111-111111111111}"],
  ];
  const idLookups: [string, string, Caller][] = [
    ["job", "query($id: ID!) { job(id: $id) { id } }", "VIEWER"],
    ["run", "query($id: ID!) { run(id: $id) { id } }", "VIEWER"],
    ["restorePoint", "query($id: ID!) { restorePoint(id: $id) { id } }", "VIEWER"],
    ["removeRemote", "mutation($id: ID!) { removeRemote(id: $id) }", "ADMIN"],
    ["cancelRun", "mutation($id: ID!) { cancelRun(id: $id) { id } }", "OPERATOR"],
  ];
  for (const [what, id] of badIds) {
    for (const [operation, query, caller] of idLookups) {
      gql({ name: `${operation} with an id that is ${what}`, query, variables: { id }, caller, expect: MISSING });
    }
  }
  gql({
    name: "srs of an unknown pool",
    query: "query($p: ID) { srs(poolId: $p) { uuid } }",
    variables: { p: "6f1c2b9e-1111-4111-8111-111111111111" },
    caller: "VIEWER",
    expect: MISSING,
  });
  gql({
    name: "vms of an unknown pool",
    query: "query($p: ID) { vms(poolId: $p) { uuid } }",
    variables: { p: "6f1c2b9e-1111-4111-8111-111111111111" },
    caller: "VIEWER",
    expect: MISSING,
  });
  gql({
    name: "runs of a job id that is not a uuid",
    query: '{ runs(filter: { jobId: "nope" }) { totalCount } }',
    caller: "VIEWER",
    expect: MISSING,
  });

  // --- Wrong types for variables ------------------------------------------------------------------------------------------
  const wrongTypes: [string, string, Record<string, unknown>][] = [
    ["first as a string", RUNS_AFTER, { first: "ten" }],
    ["first as a boolean", RUNS_AFTER, { first: true }],
    ["first as a list", RUNS_AFTER, { first: [1] }],
    ["first as an object", RUNS_AFTER, { first: { $gt: 0 } }],
    ["first as a float", RUNS_AFTER, { first: 1.5 }],
    ["first past 32 bits", RUNS_AFTER, { first: 2 ** 31 }],
    ["first as 1e300", RUNS_AFTER, { first: 1e300 }],
    ["first as the text NaN", RUNS_AFTER, { first: "NaN" }],
    ["first as the text Infinity", RUNS_AFTER, { first: "Infinity" }],
    ["after as a number", RUNS_AFTER, { after: 12 }],
    ["after as an object", RUNS_AFTER, { after: { cursor: 1 } }],
    ["an id as a boolean", "query($id: ID!) { job(id: $id) { id } }", { id: true }],
    ["an id as null", "query($id: ID!) { job(id: $id) { id } }", { id: null }],
    ["a missing required variable", "query($id: ID!) { job(id: $id) { id } }", {}],
    ["an input as a string", "query($f: RunFilter) { runs(filter: $f) { totalCount } }", { f: "status=FAILURE" }],
    ["an unknown input field", "query($f: RunFilter) { runs(filter: $f) { totalCount } }", { f: { status: ["FAILURE"], sql: "1=1" } }],
    ["an unknown enum value", "query($f: RunFilter) { runs(filter: $f) { totalCount } }", { f: { status: ["PWNED"] } }],
    ["an enum in lower case", "query($f: RunFilter) { runs(filter: $f) { totalCount } }", { f: { status: ["failure"] } }],
    ["a DateTime that is not a date", "query($f: RunFilter) { runs(filter: $f) { totalCount } }", { f: { from: "yesterday" } }],
    ["a DateTime in year 275761", "query($f: RunFilter) { runs(filter: $f) { totalCount } }", { f: { from: "+275761-01-01T00:00:00Z" } }],
    ["a DateTime as a number", "query($f: RunFilter) { runs(filter: $f) { totalCount } }", { f: { from: -8.64e15 } }],
    ["a variable of an undeclared type", "query($x: Nope) { me { id } }", { x: 1 }],
  ];
  for (const [what, query, variables] of wrongTypes) {
    gql({ name: `wrong type: ${what}`, query, variables, caller: "VIEWER", expect: what.includes("undeclared") ? VALIDATION : INPUT });
  }
  gql({
    name: "wrong type: a role that does not exist",
    query: 'mutation($r: Role!) { createApiToken(name: "x", role: $r) { id } }',
    variables: { r: "ROOT" },
    caller: "ADMIN",
    expect: INPUT,
  });

  // --- Cursors and page sizes ---------------------------------------------------------------------------------------------
  const badCursors: [string, string][] = [
    ["garbage", "garbage"],
    ["base64 of JSON with SQL", Buffer.from(JSON.stringify({ id: "' OR 1=1 --", createdAt: "x" })).toString("base64")],
    ["base64 of a huge number", Buffer.from("99999999999999999999999999").toString("base64url")],
    ["a NUL", "\u0000"],
    ["100 KB", "c".repeat(100 * 1024)],
    ["a uuid", "6f1c2b9e-1111-4111-8111-111111111111"],
  ];
  for (const [what, after] of badCursors) {
    gql({
      name: `runs cursor: ${what}`,
      query: RUNS_AFTER,
      variables: { first: 10, after },
      caller: "VIEWER",
      expect: INPUT,
      field: /^after$/,
    });
    gql({
      name: `restorePoints cursor: ${what}`,
      query: "query($after: String) { restorePoints(first: 10, after: $after) { totalCount } }",
      variables: { after },
      caller: "VIEWER",
      expect: INPUT,
      field: /^after$/,
    });
  }
  for (const first of [-1, -2147483648, 501, 100000, 2147483647]) {
    gql({ name: `runs first: ${first}`, query: RUNS_AFTER, variables: { first }, caller: "VIEWER", expect: INPUT, field: /^first$/ });
  }
  gql({
    name: "job runs first: 2147483647 nested",
    query: `query($id: ID!) { job(id: $id) { runs(first: 2147483647) { totalCount } } }`,
    variables: { id: ctx.jobId },
    caller: "VIEWER",
    expect: INPUT,
  });
  gql({
    name: "vmProtection olderThanHours: -5",
    query: "{ vmProtection(olderThanHours: -5) { ageHours } }",
    caller: "VIEWER",
    expect: INPUT,
  });
  gql({
    name: "vmProtection olderThanHours: 2147483647",
    query: "{ vmProtection(olderThanHours: 2147483647) { ageHours } }",
    caller: "VIEWER",
    expect: FORGIVING,
  });
  gql({
    name: "backupStats over 10000 years",
    query: 'query { backupStats(from: "0001-01-01T00:00:00Z", to: "9999-12-31T23:59:59Z", groupBy: DAY) { key } }',
    caller: "VIEWER",
    expect: FORGIVING,
  });
  gql({
    name: "backupStats with to before from",
    query: 'query { backupStats(from: "2030-01-01T00:00:00Z", to: "2020-01-01T00:00:00Z", groupBy: WEEK) { key } }',
    caller: "VIEWER",
    expect: INPUT,
  });

  // --- Numbers in job settings ----------------------------------------------------------------------------------------------
  const badSettings: [string, Record<string, unknown>][] = [
    ["concurrency -1", { concurrency: -1 }],
    ["concurrency 2147483647", { concurrency: 2147483647 }],
    ["retries -1", { retries: -1 }],
    ["timeoutSeconds -60", { timeoutSeconds: -60 }],
    ["timeoutSeconds 0", { timeoutSeconds: 0 }],
    ["fullInterval -5", { fullInterval: -5 }],
    ["verifyOlderThanDays 99999", { verifyOlderThanDays: 99999 }],
    ["21 report e-mails", { reportEmails: Array.from({ length: 21 }, (_, i) => `a${i}@example.net`) }],
    ["a report e-mail with a newline header", { reportEmails: ["a@example.net\r\nBcc: victim@example.net"] }],
    ["a report e-mail that is not one", { reportEmails: ["not an address"] }],
  ];
  for (const [what, settings] of badSettings) {
    gql({
      name: `job settings: ${what}`,
      query: CREATE_JOB,
      variables: { input: jobInput(`settings ${what} ${ctx.unique()}`, { settings }) },
      caller: "ADMIN",
      expect: INPUT,
      field: /^input\.settings\./,
    });
  }
  for (const [what, schedule] of [
    ["snapshotRetention -1", { snapshotRetention: -1 }],
    ["snapshotRetention 2147483647", { snapshotRetention: 2147483647 }],
  ] as const) {
    gql({
      name: `schedule: ${what}`,
      query: CREATE_JOB,
      variables: { input: jobInput(`schedule ${what} ${ctx.unique()}`, {}, schedule) },
      caller: "ADMIN",
      expect: INPUT,
      field: /^input\.schedules\.0\./,
    });
  }

  // --- Cron expressions: never more often than once a minute, never one that cannot fire ------------------------------------
  const badCrons: [string, string][] = [
    ["7 fields, every second", "* * * * * * *"],
    ["6 fields, every second", "* * * * * *"],
    ["6 fields, every 5 seconds", "*/5 * * * * *"],
    ["6 fields, seconds 0-59 listed", "0-59 * * * * *"],
    ["8 fields", "* * * * * * * *"],
    ["31 February", "0 0 31 2 *"],
    ["30 February", "0 0 30 2 *"],
    ["31 April", "0 0 31 4 *"],
    ["minute 60", "60 * * * *"],
    ["hour 24", "0 24 * * *"],
    ["day 0", "0 0 0 * *"],
    ["month 13", "0 0 1 13 *"],
    ["a step of 0", "*/0 * * * *"],
    ["@reboot", "@reboot"],
    ["@every 1s", "@every 1s"],
    ["words", "every night at two"],
    ["empty", ""],
    ["a NUL", "0 2 * * *\u0000"],
    ["a shell substitution", "$(reboot) * * * *"],
    ["100 KB", `${"1,".repeat(50 * 1024)}2 * * * *`],
  ];
  for (const [what, cron] of badCrons) {
    gql({
      name: `cron: ${what}`,
      query: CREATE_JOB,
      variables: { input: jobInput(`cron ${what} ${ctx.unique()}`, {}, { cron }) },
      caller: "ADMIN",
      expect: INPUT,
      field: /^input\.schedules\.0\.cron$/,
      ws: false,
    });
  }
  for (const [what, timezone] of [
    ["unknown", "Mars/Olympus_Mons"],
    ["a traversal", "../../../etc/localtime"],
    ["a NUL", "UTC\u0000"],
    ["10 KB", "Z".repeat(10 * 1024)],
  ] as const) {
    gql({
      name: `time zone: ${what}`,
      query: CREATE_JOB,
      variables: { input: jobInput(`tz ${what} ${ctx.unique()}`, {}, { timezone }) },
      caller: "ADMIN",
      expect: INPUT,
      field: /^input\.schedules\.0\.timezone$/,
      ws: false,
    });
  }
  gql({
    name: "2000 schedules on one job",
    query: CREATE_JOB,
    variables: {
      input: {
        ...jobInput(`many schedules ${ctx.unique()}`),
        schedules: Array.from({ length: 2000 }, () => ({ cron: "0 2 * * *", snapshotRetention: 1 })),
      },
    },
    caller: "ADMIN",
    expect: INPUT,
    field: /^input\.schedules/,
    ws: false,
  });

  // --- Webhook targets: http(s) only, never this machine or the link-local network (metadata services) -----------------------
  const badWebhooks: [string, string][] = [
    ["file:", "file:///etc/passwd"],
    ["javascript:", "javascript:alert(1)"],
    ["data:", "data:text/plain,hello"],
    ["gopher:", "gopher://127.0.0.1:25/_HELO"],
    ["ftp:", "ftp://example.net/x"],
    ["the cloud metadata address", "http://169.254.169.254/latest/meta-data/"],
    ["link-local", "http://169.254.1.1/"],
    ["loopback", "http://127.0.0.1/hook"],
    ["loopback elsewhere in 127/8", "http://127.0.0.2:8080/"],
    ["localhost", "http://localhost:3000/hook"],
    ["IPv6 loopback", "http://[::1]/hook"],
    ["IPv6 link-local", "http://[fe80::1]/hook"],
    ["IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]/"],
    ["the unspecified address", "http://0.0.0.0/"],
    ["a decimal loopback", "http://2130706433/"],
    ["a hex loopback", "http://0x7f000001/"],
    ["a short loopback", "http://127.1/"],
    ["not a URL", "not a url"],
    ["a URL without a host", "http://"],
    ["a NUL in the host", "http://exam\u0000ple.net/"],
  ];
  for (const [what, reportWebhookUrl] of badWebhooks) {
    gql({
      name: `webhook: ${what}`,
      query: CREATE_JOB,
      variables: { input: jobInput(`webhook ${what} ${ctx.unique()}`, { settings: { reportWebhookUrl } }) },
      caller: "ADMIN",
      expect: INPUT,
      field: /^input\.settings\.reportWebhookUrl$/,
      ws: false,
    });
  }

  // --- Remote locations: absolute, normalised, resolved -----------------------------------------------------------------------
  const notNormalised = (data: Record<string, unknown>) => {
    const location = (data.createRemote as { location?: string } | undefined)?.location ?? "";
    return /(^|\/)\.\.?(\/|$)/.test(location) || location.includes("//") ? `stored as ${JSON.stringify(location)}` : undefined;
  };
  const badLocations: [string, string][] = [
    ["relative", "backups"],
    ["dot-relative", "./backups"],
    ["parent-relative", "../backups"],
    ["a traversal out of an absolute folder", `${ctx.remoteDir}/../../../../../../etc`],
    ["/x/../../etc", "/x/../../etc"],
    ["a NUL", `${ctx.remoteDir}\u0000/x`],
    ["a file, not a folder", "/etc/hostname"],
    ["a folder that does not exist", `/nonexistent-${ctx.unique()}/backups`],
    ["a URL", "file:///var/backups"],
    ["10 KB", `/${"d".repeat(10 * 1024)}`],
  ];
  for (const [what, location] of badLocations) {
    gql({
      name: `remote location: ${what}`,
      query: CREATE_REMOTE,
      variables: { input: { name: `remote ${what} ${ctx.unique()}`, kind: "LOCAL", location } },
      caller: "ADMIN",
      expect:
        what.startsWith("a traversal") || what === "/x/../../etc"
          ? [DATA, "BAD_USER_INPUT", "UNAVAILABLE"]
          : ["BAD_USER_INPUT", "UNAVAILABLE"],
      checkData: notNormalised,
      ws: false,
    });
  }
  gql({
    name: "remote location: a symlink to a folder elsewhere is stored resolved",
    query: CREATE_REMOTE,
    variables: { input: { name: `remote symlink ${ctx.unique()}`, kind: "LOCAL", location: ctx.symlinkOut } },
    caller: "ADMIN",
    expect: [DATA, "BAD_USER_INPUT"],
    checkData: (data) => {
      const location = (data.createRemote as { location?: string }).location;
      return location === ctx.symlinkTarget ? undefined : `stored as ${JSON.stringify(location)}, not the folder it points to`;
    },
    ws: false,
  });
  for (const [what, location] of [
    ["an S3 bucket with a traversal", "bucket/../../etc"],
    ["an S3 bucket named with SQL", "'; DROP TABLE x; --"],
  ] as const) {
    gql({
      name: `remote location: ${what}`,
      query: CREATE_REMOTE,
      variables: {
        input: {
          name: `s3 ${ctx.unique()}`,
          kind: "S3",
          location,
          username: "k",
          password: "s",
          options: { endpoint: "http://127.0.0.1:1" },
        },
      },
      caller: "ADMIN",
      expect: INPUT,
      ws: false,
    });
  }
  gql({
    name: "remote options: JSON nested 5000 deep",
    query: CREATE_REMOTE,
    variablesJson: `{"input":${JSON.stringify({ name: `deep options ${ctx.unique()}`, kind: "LOCAL", location: ctx.remoteDir }).slice(0, -1)},"options":${nestedObjectJson(5000)}}}`,
    caller: "ADMIN",
    expect: INPUT,
    ws: false,
  });

  // --- Pool URLs (syntax only: nothing here is dialled) --------------------------------------------------------------------------
  for (const [what, url] of [
    ["file:", "file:///etc/passwd"],
    ["javascript:", "javascript:alert(1)"],
    ["not a URL", "pool master"],
    ["empty", ""],
    ["a NUL", "https://pool\u0000.example.net"],
    ["100 KB", `https://${"h".repeat(100 * 1024)}.example.net`],
  ] as const) {
    gql({
      name: `pool URL: ${what}`,
      query: CONNECT_POOL,
      variables: { input: { name: `pool ${ctx.unique()}`, url, username: "root", password: "pool-secret" } },
      caller: "ADMIN",
      expect: INPUT,
      field: /^input\.url$/,
      ws: false,
    });
  }

  // --- Certificate fingerprints that are not one ------------------------------------------------------------------------------------
  for (const [what, fingerprint] of [
    ["too short", "AB:CD"],
    ["not hex", "ZZ".repeat(32)],
    ["SHA-1 length", "AB".repeat(20)],
    ["a script", "<script>alert(1)</script>"],
    ["65 hex digits", "A".repeat(65)],
  ]) {
    gql({
      name: `pool certificate fingerprint: ${what}`,
      query: CONNECT_POOL,
      variables: {
        input: {
          name: `pool ${ctx.unique()}`,
          url: "https://127.0.0.1:9/",
          username: "root",
          password: "pool-secret",
          tlsFingerprint: fingerprint,
        },
      },
      caller: "ADMIN",
      expect: INPUT,
      field: /^input\.tlsFingerprint$/,
      ws: false,
    });
    gql({
      name: `trusted certificate fingerprint of an unknown pool: ${what}`,
      query: 'mutation($f: String!) { trustPoolCertificate(id: "00000000-0000-4000-8000-000000000000", fingerprint: $f) { id } }',
      variables: { f: fingerprint },
      caller: "ADMIN",
      expect: ["NOT_FOUND"],
    });
  }

  // --- Paths inside a restore point ------------------------------------------------------------------------------------------------
  for (const [what, path] of [
    ["a traversal", "/../../../etc/passwd"],
    ["relative", "etc/passwd"],
    ["a NUL", "/etc\u0000/passwd"],
  ] as const) {
    gql({
      name: `browse path: ${what}`,
      query: 'query($p: String!) { browseRestorePoint(id: "6f1c2b9e-1111-4111-8111-111111111111", disk: 0, path: $p) { name } }',
      variables: { p: path },
      caller: "VIEWER",
      expect: MISSING,
    });
  }
  gql({
    name: "restoreFiles with a negative disk and traversal paths",
    query: "mutation($i: FileRestoreInput!) { restoreFiles(input: $i) { url } }",
    variables: { i: { restorePointId: "6f1c2b9e-1111-4111-8111-111111111111", disk: -1, paths: ["/../../etc/shadow"] } },
    caller: "OPERATOR",
    expect: MISSING,
  });

  // --- Query shape: depth, aliases, fragments, sizes ----------------------------------------------------------------------------------
  for (const pairs of [7, 8, 12, 50, 400]) {
    gql({ name: `vms { pool { vms ... nested ${pairs} deep`, query: vmsPoolNesting(pairs), caller: "VIEWER", expect: ["BAD_USER_INPUT"] });
  }
  gql({
    name: "selection sets nested 10,000 deep",
    query: `{ ${"jobs { lastRun { ".repeat(5000)}id${" } }".repeat(5000)} }`,
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({
    name: "60 aliases",
    query: `{ ${Array.from({ length: 60 }, (_, i) => `a${i}: me { id }`).join(" ")} }`,
    caller: "VIEWER",
    expect: ["BAD_USER_INPUT"],
  });
  gql({
    name: "10,000 aliases",
    query: `{ ${Array.from({ length: 10_000 }, (_, i) => `a${i}: __typename`).join(" ")} }`,
    caller: "VIEWER",
    // Refused by the alias limit, or before that by the parser's token limit.
    expect: ["BAD_USER_INPUT", "GRAPHQL_PARSE_FAILED"],
  });
  gql({
    name: "aliased expensive lists",
    query: `{ ${Array.from({ length: 40 }, (_, i) => `r${i}: runs(first: 500) { nodes { tasks { id name } } }`).join(" ")} }`,
    caller: "VIEWER",
    expect: ["BAD_USER_INPUT"],
  });
  gql({
    name: "the same field 20,000 times without aliases",
    query: `{ ${"me { id } ".repeat(20_000)} }`,
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({
    name: "a fragment cycle",
    query: "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
    caller: "VIEWER",
    expect: VALIDATION,
  });
  gql({
    name: "a fragment spreading itself",
    query: "query { ...A } fragment A on Query { me { id } ...A }",
    caller: "VIEWER",
    expect: VALIDATION,
  });
  gql({ name: "an unknown fragment", query: "query { ...Nope }", caller: "VIEWER", expect: VALIDATION });
  gql({ name: "a fragment on a wrong type", query: "query { ...A } fragment A on Job { id }", caller: "VIEWER", expect: VALIDATION });
  gql({ name: "an exponential fragment fan-out", query: fragmentFanOut(24), caller: "VIEWER", expect: REQUEST });
  gql({
    name: "a huge literal list of 100,000 tags",
    query: `{ vms(tags: [${'"t",'.repeat(100_000)}"t"]) { uuid } }`,
    caller: "VIEWER",
    expect: [...FORGIVING, "GRAPHQL_PARSE_FAILED"],
  });
  gql({
    name: "list literals nested 10,000 deep",
    query: `{ vms(tags: ${"[".repeat(10_000)}"t"${"]".repeat(10_000)}) { uuid } }`,
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({
    name: "object literals nested 10,000 deep",
    query: `{ runs(filter: ${"{ search: ".repeat(1)}${"{ a: ".repeat(10_000)}1${" }".repeat(10_000)} }) { totalCount } }`,
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({
    name: "a JSON variable nested 10,000 deep",
    query: 'mutation($o: JSON) { createRemote(input: { name: "deep", kind: LOCAL, location: "/nonexistent", options: $o }) { id } }',
    variablesJson: `{"o":${nestedListJson(10_000)}}`,
    caller: "ADMIN",
    expect: INPUT,
    ws: false,
  });
  gql({
    name: "a list variable nested 10,000 deep",
    query: "query($t: [String!]) { vms(tags: $t) { uuid } }",
    variablesJson: `{"t":${nestedListJson(10_000)}}`,
    caller: "VIEWER",
    expect: INPUT,
  });
  gql({
    name: "1000 directives on one field",
    query: `{ me ${"@include(if: true) ".repeat(1000)} { id } }`,
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({ name: "an unknown directive", query: '{ me @exec(cmd: "id") { id } }', caller: "VIEWER", expect: VALIDATION });
  gql({
    name: "20,000 variables declared",
    query: `query(${Array.from({ length: 20_000 }, (_, i) => `$v${i}: Int`).join(", ")}) { me { id } }`,
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({
    name: "two operations without an operation name",
    query: "query A { me { id } } query B { jobs { id } }",
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({
    name: "an operation name that is not there",
    query: "query A { me { id } }",
    operationName: "B",
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({ name: "a syntax error", query: "{ me { id ", caller: "VIEWER", expect: PARSE });
  gql({ name: "a NUL in the query text", query: "{ me\u0000 { id } }", caller: "VIEWER", expect: PARSE });
  gql({ name: "an empty query", query: "", caller: "VIEWER", expect: REQUEST });
  gql({ name: "only a comment", query: "# nothing", caller: "VIEWER", expect: REQUEST });
  gql({
    name: "a string literal with a bad escape",
    query: '{ runs(filter: { search: "\\u{110000}" }) { totalCount } }',
    caller: "VIEWER",
    expect: PARSE,
  });
  gql({
    name: "an integer literal past 64 bits",
    query: "{ runs(first: 999999999999999999999999999) { totalCount } }",
    caller: "VIEWER",
    expect: REQUEST,
  });
  gql({ name: "a float literal for an Int", query: "{ runs(first: 1.0e400) { totalCount } }", caller: "VIEWER", expect: REQUEST });

  // --- Introspection and who may ask what ---------------------------------------------------------------------------------------------
  gql({
    name: "introspection of the schema as anonymous",
    query: "{ __schema { types { name } } }",
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
  });
  gql({
    name: "introspection of a type as anonymous",
    query: '{ __type(name: "Mutation") { fields { name } } }',
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
  });
  gql({
    name: "introspection hidden in a fragment as anonymous",
    query: "query { ...I } fragment I on Query { __schema { queryType { name } } }",
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
  });
  gql({ name: "introspection of the schema as a viewer", query: "{ __schema { queryType { name } } }", caller: "VIEWER", expect: [DATA] });
  gql({ name: "a query as anonymous", query: "{ jobs { id } }", caller: "anonymous", expect: ["UNAUTHENTICATED"] });
  gql({
    name: "a mutation as anonymous",
    query: 'mutation { createApiToken(name: "x", role: ADMIN) { token } }',
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
  });
  gql({
    name: "an ADMIN token minted by a VIEWER",
    query: 'mutation { createApiToken(name: "escalate", role: ADMIN) { id } }',
    caller: "VIEWER",
    expect: ["FORBIDDEN"],
  });
  gql({
    name: "a job deleted by a VIEWER",
    query: "mutation($id: ID!) { removeJob(id: $id) }",
    variables: { id: ctx.jobId },
    caller: "VIEWER",
    expect: ["FORBIDDEN"],
  });
  gql({
    name: "a job run by a VIEWER",
    query: "mutation($id: ID!) { runJob(id: $id) { id } }",
    variables: { id: ctx.jobId },
    caller: "VIEWER",
    expect: ["FORBIDDEN"],
  });
  gql({
    name: "a job changed by an OPERATOR",
    query: `mutation($id: ID!, $i: JobInput!) { updateJob(id: $id, input: $i) { id } }`,
    variables: { id: ctx.jobId, i: jobInput("hijacked") },
    caller: "OPERATOR",
    expect: ["FORBIDDEN"],
  });

  // --- Subscriptions where they do not belong, and their arguments ------------------------------------------------------------------
  gql({ name: "a subscription over HTTP POST", query: "subscription { runUpdated { id } }", caller: "VIEWER", expect: REQUEST, ws: false });
  gql({
    name: "a subscription over HTTP POST as anonymous",
    query: "subscription { runUpdated { id } }",
    caller: "anonymous",
    expect: [...REQUEST, "UNAUTHENTICATED"],
    ws: false,
  });
  gql({
    name: "a subscription with two root fields",
    query: 'subscription { runUpdated { id } taskUpdated(runId: "x") { id } }',
    caller: "VIEWER",
    expect: VALIDATION,
  });
  gql({
    name: "taskUpdated of a run id that is junk",
    query: 'subscription { taskUpdated(runId: "junk") { id } }',
    caller: "VIEWER",
    expect: MISSING,
    ws: true,
  });
  gql({
    name: "taskUpdated of a run id of 100 KB",
    query: "subscription($r: ID!) { taskUpdated(runId: $r) { id } }",
    variables: { r: "r".repeat(100 * 1024) },
    caller: "VIEWER",
    expect: MISSING,
  });
  gql({
    name: "runUpdated of a job id that is junk",
    query: 'subscription { runUpdated(jobId: "junk\\u0000") { id } }',
    caller: "VIEWER",
    expect: MISSING,
  });

  // --- Persisted queries ---------------------------------------------------------------------------------------------------------------
  gql({
    name: "a persisted query with a wrong hash",
    query: "{ me { id } }",
    extensions: { persistedQuery: { version: 1, sha256Hash: "0".repeat(64) } },
    caller: "VIEWER",
    expect: ["PERSISTED_QUERY_NOT_SUPPORTED", "PERSISTED_QUERY_NOT_FOUND", "BAD_REQUEST", "BAD_USER_INPUT"],
    ws: false,
  });
  gql({
    name: "a persisted query hash without a query",
    query: undefined as unknown as string,
    extensions: { persistedQuery: { version: 1, sha256Hash: "f".repeat(64) } },
    caller: "VIEWER",
    expect: ["PERSISTED_QUERY_NOT_SUPPORTED", "PERSISTED_QUERY_NOT_FOUND", "BAD_REQUEST", "BAD_USER_INPUT"],
    ws: false,
  });
  gql({
    name: "a persisted query of an unknown version",
    query: "{ me { id } }",
    extensions: { persistedQuery: { version: 99, sha256Hash: "x" } },
    caller: "VIEWER",
    expect: ["PERSISTED_QUERY_NOT_SUPPORTED", "PERSISTED_QUERY_NOT_FOUND", "BAD_REQUEST", "BAD_USER_INPUT"],
    ws: false,
  });

  // --- Raw HTTP: bodies, batching, content types, credentials ---------------------------------------------------------------------------
  const http = (row: Omit<HttpRow, "kind">) => rows.push({ kind: "http", ...row });
  const me = JSON.stringify({ query: "{ me { id } }" });
  http({
    name: "a batch of two operations (an array body)",
    body: JSON.stringify([{ query: "{ me { id } }" }, { query: "{ jobs { id } }" }]),
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({
    name: "a batch of 1000 logins",
    body: JSON.stringify(
      Array.from({ length: 1000 }, () => ({ query: 'mutation { login(username: "admin", password: "guess") { token } }' })),
    ),
    caller: "anonymous",
    expect: ["BAD_REQUEST"],
  });
  http({ name: "an empty batch", body: "[]", caller: "VIEWER", expect: ["BAD_REQUEST"] });
  http({
    name: "a body of 2 MB",
    body: JSON.stringify({ query: "{ me { id } }", variables: { pad: "p".repeat(2 * MB) } }),
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
    status: [413],
  });
  http({
    name: "a query of 1 MB",
    body: JSON.stringify({ query: `{ me { id } } #${"q".repeat(MB)}` }),
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
    status: [413],
  });
  http({ name: "truncated JSON", body: '{"query": "{ me { id } }", ', caller: "VIEWER", expect: ["BAD_REQUEST"] });
  http({ name: "JSON null", body: "null", caller: "VIEWER", expect: ["BAD_REQUEST"] });
  http({ name: "a JSON string", body: '"{ me { id } }"', caller: "VIEWER", expect: ["BAD_REQUEST"] });
  http({ name: "a JSON number", body: "12", caller: "VIEWER", expect: ["BAD_REQUEST"] });
  http({ name: "query as a number", body: JSON.stringify({ query: 12 }), caller: "VIEWER", expect: ["BAD_REQUEST"] });
  http({
    name: "variables as a string",
    body: JSON.stringify({ query: "{ me { id } }", variables: "x" }),
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({
    name: "extensions as a list",
    body: JSON.stringify({ query: "{ me { id } }", extensions: [1] }),
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({
    name: "a __proto__ key",
    body: '{"query": "{ me { id } }", "__proto__": {"polluted": true}, "variables": {"__proto__": {"x": 1}}}',
    caller: "VIEWER",
    expect: [DATA],
    status: [200],
  });
  http({
    name: "invalid UTF-8",
    body: Buffer.concat([Buffer.from('{"query": "{ me { id } }", "x": "'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]),
    caller: "VIEWER",
    expect: [DATA, "BAD_REQUEST"],
    status: [200, 400],
  });
  http({
    name: "JSON nested 100,000 deep",
    body: `${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}`,
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({
    name: "text/plain (a CSRF shape)",
    body: me,
    headers: { "content-type": "text/plain" },
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({
    name: "a form body",
    body: "query=%7B%20me%20%7B%20id%20%7D%20%7D",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({
    name: "multipart",
    body: '--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query":"{ me { id } }"}\r\n--b--\r\n',
    headers: { "content-type": "multipart/form-data; boundary=b" },
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({
    name: "application/graphql",
    body: "{ me { id } }",
    headers: { "content-type": "application/graphql" },
    caller: "VIEWER",
    expect: ["BAD_REQUEST"],
  });
  http({ name: "no content type", body: me, headers: { "content-type": "" }, caller: "VIEWER", expect: ["BAD_REQUEST"] });
  // Decoding a declared charset is fine; what matters is that nothing breaks.
  http({
    name: "JSON in UTF-16",
    body: Buffer.from(me, "utf16le"),
    headers: { "content-type": "application/json; charset=utf-16" },
    caller: "VIEWER",
    expect: [DATA, "BAD_REQUEST"],
    status: [200, 400, 415],
  });
  http({
    name: "a Basic authorization",
    body: me,
    headers: { authorization: `Basic ${Buffer.from("admin:admin").toString("base64")}` },
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
    status: [401, 400],
  });
  http({
    name: "a bearer token that is not one",
    body: me,
    headers: { authorization: "Bearer not-a-token" },
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
    status: [401, 400],
  });
  http({
    name: "a bearer token of 8 KB",
    body: me,
    headers: { authorization: `Bearer ${"t".repeat(8 * 1024)}` },
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
    status: [401, 400],
  });
  http({
    name: "a bearer token with SQL",
    body: me,
    headers: { authorization: "Bearer ' OR 1=1 --" },
    caller: "anonymous",
    expect: ["UNAUTHENTICATED"],
    status: [401, 400],
  });

  // --- Raw graphql-ws frames ----------------------------------------------------------------------------------------------------------------
  const ws = (row: Omit<WsRow, "kind">) => rows.push({ kind: "ws", ...row });
  ws({ name: "ws: a frame that is not JSON", frames: ["{ this is not json"], caller: "VIEWER", closeCodes: [4400] });
  ws({
    name: "ws: a message of an unknown type",
    frames: [JSON.stringify({ type: "exec", payload: "id" })],
    caller: "VIEWER",
    closeCodes: [4400],
  });
  ws({
    name: "ws: a subscribe without an id",
    frames: [JSON.stringify({ type: "subscribe", payload: { query: "{ me { id } }" } })],
    caller: "VIEWER",
    closeCodes: [4400],
  });
  ws({
    name: "ws: a subscribe with a query that is a number",
    frames: [JSON.stringify({ id: "1", type: "subscribe", payload: { query: 12 } })],
    caller: "VIEWER",
    closeCodes: [4400],
    expect: REQUEST,
  });
  ws({
    name: "ws: two subscribes with the same id",
    frames: [
      JSON.stringify({ id: "1", type: "subscribe", payload: { query: "subscription { runUpdated { id } }" } }),
      JSON.stringify({ id: "1", type: "subscribe", payload: { query: "subscription { runUpdated { id } }" } }),
    ],
    caller: "VIEWER",
    closeCodes: [4409],
  });
  ws({
    name: "ws: a second connection_init",
    frames: [JSON.stringify({ type: "connection_init", payload: {} })],
    caller: "VIEWER",
    closeCodes: [4429],
  });
  ws({
    name: "ws: a frame of 2 MB",
    frames: [JSON.stringify({ id: "1", type: "subscribe", payload: { query: `{ me { id } } #${"w".repeat(2 * MB)}` } })],
    caller: "VIEWER",
    closeCodes: [1009, 4400, 4413],
  });
  ws({ name: "ws: a binary frame", frames: [Buffer.from([0, 1, 2, 3, 255])], caller: "VIEWER", closeCodes: [4400, 1003] });

  return rows;
}

/** `{"a":{"a":...1}}` as JSON text, `depth` deep (JSON.stringify overflows the stack on such values). */
function nestedObjectJson(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

function nestedListJson(depth: number): string {
  return `${"[".repeat(depth)}"t"${"]".repeat(depth)}`;
}

/** F_n spreads F_(n-1) twice: 2^levels copies of `me { id }` once expanded. */
function fragmentFanOut(levels: number): string {
  const fragments = ["fragment F0 on Query { me { id } }"];
  for (let i = 1; i <= levels; i++) fragments.push(`fragment F${i} on Query { ...F${i - 1} ...F${i - 1} }`);
  return `query { ...F${levels} } ${fragments.join(" ")}`;
}
