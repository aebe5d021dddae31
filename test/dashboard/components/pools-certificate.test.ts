// The Pools page and TLS pinning: the pinned fingerprint and the old-XAPI warning in each row, the fingerprint field of
// the connect/edit form, and "Trust new certificate" for an ADMIN on a pool in ERROR.
import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import { ApiError, ErrorCode } from "$lib/api/errors.js";
import type { PoolRecord } from "$lib/api/operations-pools.js";
import PoolList from "$lib/components/PoolList.svelte";
import { badInput, fakeApi, findElement, type } from "./harness/fake-api.js";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const OLD = "3F:2A:91:0C:5D:7E:AA:10:42:BB:C3:19:E0:58:6D:4F:12:9A:77:DE:01:C8:35:F4:6B:2E:90:AB:CD:EF:01:23";
const NEW = "A1:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:01:12:23:34:45:56:67:78:89:9A:AB:BC:CD:DE:EF:F0";
const WARNING =
  "The pool master speaks XAPI 2.12, older than 2.21 (XenServer 8 / XCP-ng 8.3): Changed Block Tracking (DELTA backups). Upgrade the pool to use these.";

const pool = (name: string, patch: Partial<PoolRecord> = {}): PoolRecord => ({
  id: `p-${name}`,
  name,
  url: `https://${name}.example.net`,
  username: "root",
  allowUnauthorized: false,
  tlsFingerprint: OLD,
  presentedFingerprint: null,
  status: "CONNECTED",
  lastError: null,
  warning: null,
  connectedAt: "2026-12-01T08:00:00Z",
  hosts: [{ uuid: `h-${name}`, name: `${name}-host1`, address: "10.0.0.1" }],
  srs: [],
  vms: [],
  ...patch,
});

/** The message shown at the field labelled `label`, when the field is marked invalid and points to it. */
const fieldError = (label: string) => {
  const input = screen.getByLabelText(label);
  const id = input.getAttribute("aria-describedby");
  return input.getAttribute("aria-invalid") === "true" && id ? (document.getElementById(id)?.textContent ?? null) : null;
};

const changed = pool("lab", {
  status: "ERROR",
  connectedAt: null,
  lastError: `The TLS certificate of pool lab changed: Cairn trusts ${OLD}, the pool now presents ${NEW}.`,
  presentedFingerprint: NEW,
});

describe("the pool list", () => {
  it("shows each pool's pinned fingerprint in monospace, breakable only between bytes, and its warning in words", async () => {
    const api = fakeApi({
      Pools: () => ({
        pools: [
          pool("lab", { warning: WARNING }),
          pool("plain", { url: "http://plain.example.net", tlsFingerprint: null }),
          pool("lax", { allowUnauthorized: true, tlsFingerprint: null }),
        ],
      }),
    });
    render(PoolList, { client: api.client, role: "VIEWER" });
    const lab = await findElement('tr[data-pool="lab"]');
    const code = lab.querySelector("code[data-fingerprint]") as HTMLElement;
    expect(code.textContent).toBe(OLD);
    // A break opportunity after each of the 31 colons, and nowhere inside a byte.
    expect(code.querySelectorAll("wbr")).toHaveLength(31);
    expect(within(lab).getByText("Certificate SHA-256")).toBeTruthy();
    expect((lab.querySelector("[data-warning]") as HTMLElement).textContent).toBe(`Limited: ${WARNING}`);

    const plain = document.querySelector('tr[data-pool="plain"]') as HTMLElement;
    expect(plain.textContent).toContain("Plain HTTP: no certificate to check.");
    expect(plain.querySelector("[data-warning]")).toBeNull();
    expect(within(plain).queryByRole("button", { name: /^Copy/ })).toBeNull();
    const lax = document.querySelector('tr[data-pool="lax"]') as HTMLElement;
    expect(lax.textContent).toContain("Any certificate accepted (discouraged)");

    // A VIEWER reads, and changes nothing.
    expect(screen.queryByRole("button", { name: "Connect a pool" })).toBeNull();
    expect(within(lab).queryByRole("button", { name: "Edit" })).toBeNull();
    expect(api.calls.map((c) => c.operation)).toEqual(["Pools"]);
  });

  it("copies the fingerprint, or selects it for Ctrl+C where the browser gives no clipboard", async () => {
    const writeText = vi.fn(async () => {});
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });
    const api = fakeApi({ Pools: () => ({ pools: [pool("lab")] }) });
    render(PoolList, { client: api.client, role: "OPERATOR" });
    await fireEvent.click(await screen.findByRole("button", { name: "Copy the certificate fingerprint of lab" }));
    await screen.findByRole("button", { name: "Copied the certificate fingerprint of lab" });
    expect(writeText).toHaveBeenCalledWith(OLD);
    cleanup();

    vi.stubGlobal("navigator", { ...navigator, clipboard: undefined });
    render(PoolList, { client: api.client, role: "OPERATOR" });
    await fireEvent.click(await screen.findByRole("button", { name: "Copy the certificate fingerprint of lab" }));
    await screen.findByText("This browser did not allow copying: the fingerprint is selected, press Ctrl+C (⌘C).");
    expect(window.getSelection()?.toString()).toBe(OLD);
  });
});

describe("the connect and edit form", () => {
  it("sends the fingerprint given, none when left empty, and says the checkbox accepts any certificate", async () => {
    const api = fakeApi({
      Pools: () => ({ pools: [] }),
      ConnectPool: () => ({ connectPool: { id: "p1", status: "CONNECTED" } }),
    });
    render(PoolList, { client: api.client, role: "ADMIN" });
    await fireEvent.click(await screen.findByRole("button", { name: "Connect a pool" }));
    const fingerprint = screen.getByLabelText("Certificate fingerprint (optional)") as HTMLInputElement;
    expect(screen.getByText(/Leave empty to trust the certificate the pool presents now; check it on the host with/).textContent).toContain(
      "openssl x509 -in /etc/xensource/xapi-ssl.pem -noout -fingerprint -sha256",
    );
    const lax = screen.getByLabelText(/Accept any certificate/) as HTMLInputElement;
    expect(lax.closest("label")?.textContent).toMatch(/any certificate.*discouraged/);
    expect(lax.checked).toBe(false);

    type(screen.getByLabelText("Name"), "lab");
    type(screen.getByLabelText("Pool master URL"), "https://lab.example.net");
    type(screen.getByLabelText("Password"), "secret");
    type(fingerprint, ` ${NEW.toLowerCase()} `);
    await fireEvent.click(screen.getByRole("button", { name: "Connect" }));
    await waitFor(() => expect(api.callsOf("Pools")).toHaveLength(2));
    expect(api.callsOf("ConnectPool")).toEqual([
      {
        input: {
          name: "lab",
          url: "https://lab.example.net",
          username: "root",
          password: "secret",
          allowUnauthorized: false,
          tlsFingerprint: NEW.toLowerCase(),
        },
      },
    ]);

    // Empty: trust on first use (null); plain HTTP has no certificate, so the field is off and sends nothing.
    await fireEvent.click(screen.getByRole("button", { name: "Connect a pool" }));
    type(screen.getByLabelText("Name"), "plain");
    type(screen.getByLabelText("Pool master URL"), "http://plain.example.net");
    type(screen.getByLabelText("Password"), "secret");
    await waitFor(() => expect((screen.getByLabelText("Certificate fingerprint (optional)") as HTMLInputElement).disabled).toBe(true));
    await fireEvent.click(screen.getByRole("button", { name: "Connect" }));
    await waitFor(() => expect(api.callsOf("ConnectPool")).toHaveLength(2));
    expect(api.callsOf("ConnectPool")[1]).toMatchObject({ input: { url: "http://plain.example.net", tlsFingerprint: null } });
  });

  it("shows the server's refusal of the fingerprint at its field, and keeps the form open", async () => {
    const refusal = `the pool at https://lab.example.net presents a certificate with fingerprint ${NEW}, not ${OLD}: check the fingerprint on the host (and that nothing intercepts the connection)`;
    const api = fakeApi({
      Pools: () => ({ pools: [pool("lab")] }),
      UpdatePool: () => {
        throw badInput("input.tlsFingerprint", refusal);
      },
    });
    render(PoolList, { client: api.client, role: "ADMIN" });
    const row = await findElement('tr[data-pool="lab"]');
    await fireEvent.click(within(row).getByRole("button", { name: "Edit" }));
    const form = screen.getByRole("form", { name: "Edit lab" });
    // Editing keeps the pin unless another fingerprint is given.
    expect(within(form).getByText(/Leave empty to keep the pinned certificate/)).toBeTruthy();
    type(screen.getByLabelText("Certificate fingerprint (optional)"), OLD);
    await fireEvent.click(within(form).getByRole("button", { name: "Save and reconnect" }));
    await waitFor(() => expect(fieldError("Certificate fingerprint (optional)")).toBe(refusal.charAt(0).toUpperCase() + refusal.slice(1)));
    expect(api.callsOf("UpdatePool")).toEqual([
      {
        id: "p-lab",
        input: {
          name: "lab",
          url: "https://lab.example.net",
          username: "root",
          password: null,
          allowUnauthorized: false,
          tlsFingerprint: OLD,
        },
      },
    ]);
    expect(screen.queryByRole("alert")).toBeNull();
    expect(screen.getByRole("form", { name: "Edit lab" })).toBeTruthy();
  });
});

describe("trusting a replaced certificate", () => {
  it("is offered to an ADMIN only on a pool whose certificate is refused", async () => {
    const pools = [
      changed,
      pool("fine"),
      pool("plain", { url: "http://plain.example.net", tlsFingerprint: null, status: "ERROR", lastError: "connect ECONNREFUSED" }),
      pool("lax", { allowUnauthorized: true, tlsFingerprint: null, status: "ERROR", lastError: "connect ECONNREFUSED" }),
      // An https pool that is down for another reason: nothing to trust.
      pool("down", { status: "ERROR", lastError: "pool down is unreachable (down.example.net): connect ECONNREFUSED" }),
    ];
    for (const role of ["ADMIN", "OPERATOR", "VIEWER"]) {
      const api = fakeApi({ Pools: () => ({ pools }) });
      render(PoolList, { client: api.client, role });
      await findElement('tr[data-pool="lab"]');
      const offered = [...document.querySelectorAll<HTMLElement>("tr[data-pool]")]
        .filter((row) => within(row).queryByRole("button", { name: /^Trust new certificate/ }))
        .map((row) => row.dataset.pool);
      expect(offered).toEqual(role === "ADMIN" ? ["lab"] : []);
      cleanup();
    }
  });

  it("sends the fingerprint pasted, shows a refusal at the field, and reloads the pool once trusted", async () => {
    let trusted = false;
    const presented = `the pool at https://lab.example.net presents a certificate with fingerprint ${NEW}, not ${OLD}: check the fingerprint on the host (and that nothing intercepts the connection)`;
    const api = fakeApi({
      Pools: () => ({ pools: [trusted ? pool("lab", { tlsFingerprint: NEW }) : changed] }),
      TrustPoolCertificate: ({ fingerprint }) => {
        if (fingerprint !== NEW) throw badInput("fingerprint", presented);
        trusted = true;
        return { trustPoolCertificate: { id: "p-lab", status: "CONNECTED", tlsFingerprint: NEW, lastError: null } };
      },
    });
    render(PoolList, { client: api.client, role: "ADMIN" });
    const row = await findElement('tr[data-pool="lab"]');
    expect(row.textContent).toContain(changed.lastError);
    await fireEvent.click(within(row).getByRole("button", { name: "Trust new certificate of lab" }));
    const form = within(row).getByRole("form", { name: "Trust new certificate of lab" });
    const field = within(form).getByLabelText("Fingerprint checked on the host");
    expect(document.activeElement).toBe(field);
    expect(form.textContent).toContain("openssl x509 -in /etc/xensource/xapi-ssl.pem -noout -fingerprint -sha256");

    // Nothing pasted: said at the field, nothing sent.
    await fireEvent.click(within(form).getByRole("button", { name: "Trust this certificate" }));
    await waitFor(() => expect(fieldError("Fingerprint checked on the host")).toBe("Paste the fingerprint you read on the host."));
    expect(api.callsOf("TrustPoolCertificate")).toEqual([]);

    // Not the certificate the pool presents: the server's words, which name the one it does, at the field.
    type(field, ` ${OLD} `);
    await fireEvent.click(within(form).getByRole("button", { name: "Trust this certificate" }));
    await waitFor(() => expect(fieldError("Fingerprint checked on the host")).toContain(`presents a certificate with fingerprint ${NEW}`));
    expect(api.callsOf("TrustPoolCertificate")).toEqual([{ id: "p-lab", fingerprint: OLD }]);
    expect(api.callsOf("Pools")).toHaveLength(1);

    type(field, NEW);
    await fireEvent.click(within(form).getByRole("button", { name: "Trust this certificate" }));
    await waitFor(() => expect(document.querySelector('tr[data-pool="lab"] code[data-fingerprint]')?.textContent).toBe(NEW));
    expect(api.callsOf("TrustPoolCertificate")[1]).toEqual({ id: "p-lab", fingerprint: NEW });
    expect(api.callsOf("Pools")).toHaveLength(2);
    expect(screen.queryByRole("form", { name: "Trust new certificate of lab" })).toBeNull();
    expect(screen.queryByRole("button", { name: /^Trust new certificate/ })).toBeNull();
  });

  it("shows a refusal that is not about the fingerprint above the form (the pool unreachable)", async () => {
    const api = fakeApi({
      Pools: () => ({ pools: [changed] }),
      TrustPoolCertificate: () => {
        throw new ApiError(
          "Cannot reach the pool at https://lab.example.net: connect ECONNREFUSED. Check the address.",
          ErrorCode.Unavailable,
        );
      },
    });
    render(PoolList, { client: api.client, role: "ADMIN" });
    const row = await findElement('tr[data-pool="lab"]');
    await fireEvent.click(within(row).getByRole("button", { name: "Trust new certificate of lab" }));
    type(within(row).getByLabelText("Fingerprint checked on the host"), NEW);
    await fireEvent.click(within(row).getByRole("button", { name: "Trust this certificate" }));
    expect((await within(row).findByRole("alert")).textContent).toBe(
      "Cannot reach the pool at https://lab.example.net: connect ECONNREFUSED. Check the address.",
    );
    expect(fieldError("Fingerprint checked on the host")).toBeNull();
    expect(api.callsOf("Pools")).toHaveLength(1);
  });
});
