import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen } from "@testing-library/svelte";
import type { ApiClient } from "$lib/api/client.js";
import { ApiError, ErrorCode } from "$lib/api/errors.js";
import { CreateJobMutation, type JobFormChoices } from "$lib/api/operations-jobs.js";
import JobForm from "$lib/components/JobForm.svelte";
import { mapFieldErrors } from "$lib/field-errors.js";

afterEach(cleanup);

const badInput = (...fields: [string, string][]) =>
  new ApiError(
    `${fields[0]![0]}: ${fields[0]![1]}`,
    ErrorCode.BadUserInput,
    fields.map(([field, message]) => ({ message: `${field}: ${message}`, extensions: { code: "BAD_USER_INPUT", field } })),
  );

describe("mapFieldErrors", () => {
  it("keys BAD_USER_INPUT messages by their field, without `input.` and without the field repeated in the text", () => {
    const mapped = mapFieldErrors(badInput(["input.schedules.0.cron", "runs more than once a minute"], ["input.name", "is required"]));
    expect(mapped).toEqual({ byField: { "schedules.0.cron": "Runs more than once a minute", name: "Is required" }, general: null });
  });

  it("keeps other errors, and fields the form does not show, as a general message", () => {
    expect(mapFieldErrors(new ApiError("The job is already running", ErrorCode.Conflict))).toEqual({
      byField: {},
      general: "The job is already running",
    });
    const unknown = mapFieldErrors(badInput(["input.weird", "no"]), (field) => field === "name");
    expect(unknown).toEqual({ byField: {}, general: "input.weird: no" });
  });
});

const choices: JobFormChoices = {
  vms: [
    {
      uuid: "0b1a2c3d-0000-4000-8000-000000000001",
      name: "web-ext4",
      powerState: "Running",
      tags: ["prod"],
      pool: { id: "p1", name: "lab" },
    },
  ],
  remotes: [{ id: "9e6d1a44-0000-4000-8000-000000000001", name: "local", kind: "LOCAL", enabled: true }],
  pools: [{ id: "p1", name: "lab", status: "CONNECTED" }],
  srs: [],
};

function fakeClient(answer: (variables: unknown) => Promise<unknown>) {
  const calls: { document: unknown; variables: unknown }[] = [];
  const client: ApiClient = {
    request: (document, variables) => {
      calls.push({ document, variables });
      return answer(variables) as never;
    },
  };
  return { client, calls };
}

describe("JobForm field errors", () => {
  it("shows the server's BAD_USER_INPUT message at the cron field of the schedule it names, and a summary on top", async () => {
    const { client, calls } = fakeClient(() =>
      Promise.reject(badInput(["input.schedules.0.cron", "runs more than once a minute: use a 5-field expression"])),
    );
    const onSaved = vi.fn();
    render(JobForm, { client, choices, onSaved });

    await fireEvent.input(document.getElementById("job-name")!, { target: { value: "nightly" } });
    await fireEvent.click(screen.getByRole("checkbox", { name: /web-ext4/ }));
    await fireEvent.click(screen.getByRole("checkbox", { name: /local/ }));
    await fireEvent.click(screen.getByRole("button", { name: "Create job" }));

    const cron = screen.getByLabelText("Cron expression");
    await vi.waitFor(() => expect(cron.getAttribute("aria-invalid")).toBe("true"));
    const describedBy = cron.getAttribute("aria-describedby")!.split(" ");
    const message = describedBy.map((id) => document.getElementById(id)?.textContent ?? "").join(" ");
    expect(message).toContain("Runs more than once a minute: use a 5-field expression");
    expect(screen.getByRole("alert").textContent).toMatch(/need a change/);
    expect(onSaved).not.toHaveBeenCalled();

    // What was sent: the whole job, DELTA, the picked VM and remote, one schedule.
    expect(calls[0]!.document).toBe(CreateJobMutation);
    expect(calls[0]!.variables).toMatchObject({
      input: {
        name: "nightly",
        mode: "DELTA",
        selection: { vmUuids: [choices.vms[0]!.uuid] },
        remoteIds: [choices.remotes[0]!.id],
        srUuids: [],
        schedules: [{ cron: "0 2 * * *", exportRetention: 7 }],
      },
    });
  });

  it("shows an error without a field (e.g. a name already taken) at the top of the form", async () => {
    const { client } = fakeClient(() => Promise.reject(new ApiError("A job named nightly already exists", ErrorCode.Conflict)));
    render(JobForm, { client, choices, onSaved: () => {} });
    await fireEvent.click(screen.getByRole("button", { name: "Create job" }));
    await vi.waitFor(() => expect(screen.getByRole("alert").textContent).toBe("A job named nightly already exists"));
  });

  it("shows the fields of the mode: remotes for DELTA, target SRs for replication", async () => {
    const { client } = fakeClient(() => new Promise(() => {}));
    render(JobForm, { client, choices, onSaved: () => {} });
    expect(screen.getByRole("group", { name: "Remotes" })).toBeTruthy();
    expect(screen.getByLabelText("Full backup every")).toBeTruthy();
    await fireEvent.click(screen.getByRole("radio", { name: /Continuous replication/ }));
    expect(screen.queryByRole("group", { name: "Remotes" })).toBeNull();
    expect(screen.getByRole("group", { name: "Target SRs" })).toBeTruthy();
    expect(screen.getByLabelText("Replicas kept on each SR")).toBeTruthy();
  });
});

describe("JobForm stale errors", () => {
  it("drops a field's message once the field is edited, and keeps the others", async () => {
    const { client } = fakeClient(() =>
      Promise.reject(
        badInput(["input.schedules.0.cron", "is not a valid cron expression"], ["input.settings.concurrency", "must be between 1 and 32"]),
      ),
    );
    render(JobForm, { client, choices, onSaved: () => {} });
    await fireEvent.click(screen.getByRole("button", { name: "Create job" }));
    const cron = screen.getByLabelText("Cron expression");
    await vi.waitFor(() => expect(cron.getAttribute("aria-invalid")).toBe("true"));
    expect(screen.getByText("Must be between 1 and 32")).toBeTruthy();

    await fireEvent.input(cron, { target: { value: "0 3 * * *" } });
    expect(cron.getAttribute("aria-invalid")).toBeNull();
    expect(screen.queryByText("Is not a valid cron expression")).toBeNull();
    expect(screen.getByText("Must be between 1 and 32")).toBeTruthy();
  });
});
