/**
 * Mails a report through the SMTP server of `SMTP_URL` (nodemailer). The URL carries the password: it is never logged, and
 * every error message that leaves this module has the URL's credentials removed.
 */
import { createRequire } from "node:module";
import type { SendMailOptions, TransportOptions } from "nodemailer";
import { messageOf } from "../errors.js";
import type { EmailContent } from "./report-content.js";

export interface EmailSender {
  /** Sends one message to every address (one envelope). @throws Error with a message free of credentials */
  send(to: string[], content: EmailContent, signal?: AbortSignal): Promise<void>;
  close(): void;
}

export interface EmailSenderOptions {
  /** `smtp://` or `smtps://` URL, optionally with `user:password@` (config.smtpUrl). */
  smtpUrl: string;
  /** The From header (config.smtpFrom). */
  from: string;
  /** Connection, greeting and socket inactivity timeout. @default 30000 */
  timeoutMs?: number;
}

export function createEmailSender(options: EmailSenderOptions): EmailSender {
  // Loaded here, so that a Cairn without SMTP_URL never loads nodemailer (idle memory). CommonJS: module.exports is the API.
  const nodemailer = createRequire(import.meta.url)("nodemailer") as typeof import("nodemailer");
  const timeout = options.timeoutMs ?? 30_000;
  const transport = nodemailer.createTransport({
    url: options.smtpUrl,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    logger: false,
    debug: false,
  } as TransportOptions);
  const secrets = secretsOf(options.smtpUrl);
  return {
    async send(to, content, signal) {
      try {
        await transport.sendMail({
          from: options.from,
          to,
          subject: content.subject,
          text: content.text,
          html: content.html,
          // nodemailer >= 10.5 cancels a send with the message's signal (its types lag behind).
          ...(signal && { signal }),
        } as SendMailOptions);
      } catch (error) {
        throw new Error(redact(messageOf(error), secrets));
      }
    },
    close() {
      transport.close();
    },
  };
}

/** The strings of an SMTP URL that must never appear in a message: the whole URL, its password (raw and decoded). */
function secretsOf(smtpUrl: string): string[] {
  const secrets = [smtpUrl];
  try {
    const url = new URL(smtpUrl);
    if (url.password) secrets.push(url.password, decodeURIComponent(url.password));
  } catch {
    // config.ts validated the URL; nothing more to hide.
  }
  return secrets.filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
}

function redact(message: string, secrets: string[]): string {
  return secrets.reduce((text, secret) => text.split(secret).join("(hidden)"), message);
}
