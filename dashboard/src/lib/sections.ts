import { can, type Action } from "./roles.js";

/** The dashboard's sections, in nav order. */
export interface Section {
  href: string;
  label: string;
  /** Shown only to roles that may do this (the page refuses the others anyway). */
  requires?: Action;
}

export const sections: readonly Section[] = [
  { href: "/", label: "Overview" },
  { href: "/jobs", label: "Jobs" },
  { href: "/vms", label: "VMs" },
  { href: "/logs", label: "Logs" },
  { href: "/reports", label: "Reports" },
  { href: "/restore", label: "Restore" },
  { href: "/metadata", label: "Metadata" },
  { href: "/remotes", label: "Remotes" },
  { href: "/pools", label: "Pools" },
  { href: "/users", label: "Users", requires: "administer" },
  { href: "/audit", label: "Audit", requires: "administer" },
];

/** The sections a user with `role` sees in the nav. */
export function sectionsFor(role: string | null | undefined): Section[] {
  return sections.filter((section) => !section.requires || can(role, section.requires));
}
