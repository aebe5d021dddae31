/**
 * The app's API client is provided once by the root layout and read by pages and components with
 * {@link getApiClient}. Tests pass their own client through the component's context or props.
 */
import { createContext } from "svelte";
import type { ApiClient } from "./client.js";

export const [getApiClient, setApiClient] = createContext<ApiClient>();
