import { execFileSync } from "node:child_process";

/**
 * Whether an outside tool (qemu-img, vhdiinfo, mkfs.ext4, ...) is on the PATH.
 *
 * Tests that need one call `describeWithTool`: on a developer machine without the tool the suite is
 * skipped with a visible reason; under CI (`CI=true`) a missing tool fails the run instead, so CI
 * never skips silently. `.ci/run` installs every tool listed here.
 */
export function hasTool(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function missingTools(names: string[]): string[] {
  return names.filter((name) => !hasTool(name));
}

function skipReason(missing: string[]): string | undefined {
  if (missing.length === 0) return undefined;
  const reason = `needs ${missing.join(", ")} (apt-get install: see .ci/run)`;
  if (process.env.CI === "true") throw new Error(`CI must not skip: ${reason}`);
  console.warn(`SKIPPED: ${reason}`);
  return reason;
}

/** Throws under CI when a tool is missing; elsewhere returns the reason to skip (or undefined). */
export function skipReasonForTools(names: string[]): string | undefined {
  return skipReason(missingTools(names));
}

/**
 * Like {@link skipReasonForTools} for a Python module of a Debian package, imported by an explicit interpreter
 * (Debian's `/usr/bin/python3`: another Python may come first on the PATH and lack the package).
 */
export function skipReasonForPythonModule(python: string, module: string, debianPackage: string): string | undefined {
  try {
    execFileSync(python, ["-c", `import ${module}`], { stdio: "ignore" });
    return undefined;
  } catch {
    return skipReason([`${python} with ${module} (Debian package ${debianPackage})`]);
  }
}
