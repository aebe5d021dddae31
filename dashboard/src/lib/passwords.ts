/** The server's rules for a new password and a user name (API.md, Users), checked before sending so a slip shows at once. */

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 1024;
export const MAX_USERNAME_LENGTH = 64;
const USERNAME_PATTERN = /^[A-Za-z0-9._@-]+$/;

/** Why `password` cannot be the new password of `username`, or null when it can. */
export function passwordProblem(password: string, username: string): string | null {
  if (password.length < MIN_PASSWORD_LENGTH) return `Use at least ${MIN_PASSWORD_LENGTH} characters.`;
  if (password.length > MAX_PASSWORD_LENGTH) return `Use at most ${MAX_PASSWORD_LENGTH} characters.`;
  if (username && password.toLowerCase() === username.toLowerCase()) return "Choose something other than the user name.";
  return null;
}

/** Why `confirmation` does not confirm `password`, or null. */
export function confirmationProblem(password: string, confirmation: string): string | null {
  return password === confirmation ? null : "The two passwords differ: type the same one twice.";
}

/** Why `username` cannot be a user name, or null when it can. */
export function usernameProblem(username: string): string | null {
  if (!username) return "Give a user name.";
  if (username.length > MAX_USERNAME_LENGTH) return `Use at most ${MAX_USERNAME_LENGTH} characters.`;
  if (!USERNAME_PATTERN.test(username)) return "Use only letters, digits and . _ @ - (no spaces), e.g. jane.doe or jane@example.net.";
  return null;
}
