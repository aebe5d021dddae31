/**
 * Types for the `xen-api` client (4.7.x, ESM, ships no types): the members Cairn uses. Records are the
 * client's wrapped objects: XAPI fields plus `$ref`, `$id`, `$type`, `$pool` and `$<field>` resolvers.
 */
declare module "xen-api" {
  import type { EventEmitter } from "node:events";
  import type { Readable } from "node:stream";

  export interface XapiObject {
    readonly $ref: string;
    readonly $id: string;
    readonly $type: string;
    readonly uuid?: string;
    readonly [field: string]: unknown;
  }

  /** `xo-collection`: the live object cache; emits `add`, `update`, `remove` with `{[id]: object}` batches. */
  export interface XapiObjectCollection extends EventEmitter {
    readonly all: Record<string, XapiObject>;
    readonly size: number;
  }

  export interface XapiErrorLike extends Error {
    code: string;
    params: string[];
    call?: { method: string; params: unknown[]; duration: number };
    url?: string;
    task?: XapiObject;
  }

  export interface XapiOptions {
    url: string;
    auth?: { user: string; password?: string; sessionId?: string };
    allowUnauthorized?: boolean;
    readOnly?: boolean;
    transport?: "auto" | "json-rpc" | "xml-rpc";
    watchEvents?: boolean | string[];
    callTimeout?: number | Record<string, number>;
    httpInactivityTimeout?: number;
    eventPollDelay?: number;
    debounce?: number;
    callConcurrency?: number;
    syncStackTraces?: boolean;
    ignorePrematureClose?: boolean;
    httpProxy?: string;
  }

  /** The undici response of `getResource`, with the task's result promise. */
  export interface XapiResourceResponse {
    statusCode: number;
    headers: Record<string, string | string[] | undefined>;
    body: Readable & { text(): Promise<string>; arrayBuffer(): Promise<ArrayBuffer> };
    task?: Promise<unknown>;
  }

  export type PutBody = string | Buffer | (Readable & { length?: number });

  export interface ResourceOptions {
    host?: XapiObject;
    query?: Record<string, string | number | boolean>;
    task?: boolean | string | Promise<string>;
  }

  export class Xapi extends EventEmitter {
    constructor(options: XapiOptions);
    readonly status: "connected" | "connecting" | "disconnected";
    readonly connected: Promise<void>;
    readonly disconnected: Promise<void>;
    readonly pool: XapiObject;
    readonly sessionId: string;
    readonly objects: XapiObjectCollection;
    readonly objectsFetched: Promise<void>;
    readonly readOnly: boolean;
    readonly watchEventsError: unknown;
    connect(): Promise<void>;
    disconnect(): Promise<void>;
    call<T = unknown>(method: string, ...args: unknown[]): Promise<T>;
    callAsync<T = unknown>(method: string, ...args: unknown[]): Promise<T>;
    getResource(pathname: string, options?: ResourceOptions): Promise<XapiResourceResponse>;
    putResource<T = unknown>(body: PutBody, pathname: string, options?: ResourceOptions): Promise<T>;
    getAllRecords(type: string): Promise<XapiObject[]>;
    getRecord(type: string, ref: string): Promise<XapiObject>;
    getRecordByUuid(type: string, uuid: string): Promise<XapiObject>;
    getRecords(type: string, refs: string[]): Promise<XapiObject[]>;
    getField<T = unknown>(type: string, ref: string, field: string): Promise<T>;
    setField(type: string, ref: string, field: string, value: unknown): Promise<void>;
    setFieldEntry(type: string, ref: string, field: string, entry: string, value: string | null): Promise<void>;
    setFieldEntries(type: string, ref: string, field: string, entries: Record<string, string | null>): Promise<void>;
    barrier(ref?: string): Promise<XapiObject | undefined>;
    createTask(nameLabel: string, nameDescription?: string): Promise<string>;
    watchTask<T = unknown>(ref: string | XapiObject): Promise<T>;
    getObject(idOrUuidOrRef: string | XapiObject): XapiObject;
    getObject<D>(idOrUuidOrRef: string | XapiObject, defaultValue: D): XapiObject | D;
    getObjectByRef(ref: string): XapiObject;
    getObjectByRef<D>(ref: string, defaultValue: D): XapiObject | D;
    getObjectByUuid(uuid: string): XapiObject;
    getObjectByUuid<D>(uuid: string, defaultValue: D): XapiObject | D;
  }

  export function createClient(options: XapiOptions): Xapi;

  export const Ref: {
    readonly EMPTY: "OpaqueRef:NULL";
    isNotEmpty(value: unknown): value is string;
    is(value: unknown): value is string;
  };
}
