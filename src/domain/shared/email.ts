import { invalid } from './errors.ts';

/**
 * Accounts are identified by email compared case-insensitively: `Foo@X.org` and `foo@x.org` are one
 * account. The canonical form (trimmed, lower case) is what projections store and lookups use.
 */
export function canonicalEmail(text: string): string {
  const email = text.trim().toLowerCase();
  // Control characters are refused outright: PostgreSQL text cannot hold NUL, and none belongs in an address.
  if (email.length > 254 || !/^[^\s\x00-\x1f\x7f@<>()",;:\\[\]]+@[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(email)) {
    throw invalid(`${JSON.stringify(text)} is not an email address`);
  }
  return email;
}
