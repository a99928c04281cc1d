/** An agent name as the first word of a timeline message: `writer` → `Writer`. */
export function capitalize(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}
