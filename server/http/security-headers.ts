/**
 * Headers that keep the dashboard from being framed, sniffed or made to run someone else's script. The dashboard is a static
 * SvelteKit build whose pages each carry one inline bootstrap script: the Content-Security-Policy allows exactly those
 * scripts by their SHA-256 (read from the build at start), and nothing inline otherwise, so an injected `<script>` does not run.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { RequestHandler } from "express";

/** The SHA-256 source expressions of every inline `<script>` in the build's HTML pages. */
export async function inlineScriptHashes(dashboardDir: string): Promise<string[]> {
  if (!existsSync(dashboardDir)) return [];
  const hashes = new Set<string>();
  for (const file of await htmlFiles(dashboardDir)) {
    const html = await fs.readFile(file, "utf8");
    for (const match of html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/gi)) {
      if (match[1].trim()) hashes.add(`'sha256-${createHash("sha256").update(match[1]).digest("base64")}'`);
    }
  }
  return [...hashes].sort();
}

async function htmlFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    // The build's _app folder holds scripts and styles, not pages.
    if (entry.isDirectory() && entry.name !== "_app") found.push(...(await htmlFiles(full)));
    else if (entry.isFile() && entry.name.endsWith(".html")) found.push(full);
  }
  return found;
}

export function contentSecurityPolicy(scriptHashes: string[]): string {
  return [
    "default-src 'self'",
    `script-src 'self' ${scriptHashes.join(" ")}`.trim(),
    // Svelte's transitions and style: directives set inline styles; styles cannot run code.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    // 'self' covers the same-origin graphql-ws socket in current browsers; listed explicitly for older ones would need the host.
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** The middleware: every answer gets nosniff, no framing and a strict referrer policy; pages also get the CSP. */
export function securityHeaders(scriptHashes: string[]): RequestHandler {
  const csp = contentSecurityPolicy(scriptHashes);
  return (_req, res, next) => {
    res.setHeader("X-Content-Type-Options", "nosniff");
    res.setHeader("X-Frame-Options", "DENY");
    res.setHeader("Referrer-Policy", "no-referrer");
    res.setHeader("Content-Security-Policy", csp);
    res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
    next();
  };
}
