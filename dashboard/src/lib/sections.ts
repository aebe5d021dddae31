/** The dashboard's sections, in nav order. */
export interface Section {
  href: string;
  label: string;
}

export const sections: readonly Section[] = [
  { href: "/", label: "Overview" },
  { href: "/jobs", label: "Jobs" },
  { href: "/logs", label: "Logs" },
  { href: "/restore", label: "Restore" },
  { href: "/remotes", label: "Remotes" },
  { href: "/pools", label: "Pools" },
];
