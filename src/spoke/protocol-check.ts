// What may cross the wire between hub and spoke, checked field by field. The hub checks every heartbeat
// and report with these before anything reaches the database; the spoke cleans the texts it sends with
// cleanText so that they pass. Pure functions. A problem is one line naming the field and, for text,
// the offending character by its code point, never the text itself (it may be what the log must not show).
import { isIPv4, isIPv6 } from 'node:net';
import { limits, observedStates, type Heartbeat, type HostKeyFingerprint, type ObservedState, type Report } from './protocol.ts';

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };

export const capsulIdPattern = /^capsul-[a-z0-9]{10}$/;
/** ids (of reports and operations): visible ASCII, no spaces */
const idPattern = /^[\x21-\x7e]*$/;
const hostKeyTypePattern = /^[a-z0-9@.-]*$/;
const printableAsciiPattern = /^[\x20-\x7e]*$/;
/** the int columns heartbeats are stored in */
const maxCapacity = 2_147_483_647;

// Refused in any text: what PostgreSQL refuses (NUL), what can hide, rewrite or reorder text where it is
// shown (C0 and C1 controls, DEL, the line and paragraph separators, the bidirectional formatting
// characters of "Trojan Source"), and lone surrogates (no UTF-8 form: they would be stored altered).
// Multi-line text (a failure's error) may hold tab and line feed: driver output is multi-line and
// indented, and neither can hide what was shown before it, as a carriage return or an escape can.
const lineControls = '\\u0000-\\u001f';
const textControls = '\\u0000-\\u0008\\u000b-\\u001f';
const otherForbidden = '\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';
const loneSurrogate = '[\\ud800-\\udbff](?![\\udc00-\\udfff])|(?<![\\ud800-\\udbff])[\\udc00-\\udfff]';
const forbidden = (controls: string, flags = '') => new RegExp(`[${controls}${otherForbidden}]|${loneSurrogate}`, flags);
const forbiddenInLine = forbidden(lineControls);
const forbiddenInText = forbidden(textControls);

/** Why `text` may not cross the wire, or null. `multiline`: tab and line feed are allowed. */
export function textProblem(text: string, multiline = false): string | null {
  const match = (multiline ? forbiddenInText : forbiddenInLine).exec(text);
  return match ? `contains ${describeCharacter(match[0].charCodeAt(0))} at position ${match.index}` : null;
}

/**
 * `text` made fit to send: line breaks become line feeds (`multiline`) or spaces, every other character
 * textProblem refuses becomes U+FFFD, and it is cut to `maxLength` code units with an ellipsis, never
 * inside a surrogate pair.
 */
export function cleanText(text: string, maxLength: number, multiline = true): string {
  const lines = multiline ? text.replace(/\r\n?/g, '\n') : text.replace(/[\t\n\r]+/g, ' ');
  const clean = lines.replace(forbidden(multiline ? textControls : lineControls, 'g'), '\ufffd');
  if (clean.length <= maxLength) return clean;
  let cut = Math.max(0, maxLength - 1);
  if (cut > 0 && isHighSurrogate(clean.charCodeAt(cut - 1))) cut--;
  return `${clean.slice(0, cut)}…`;
}

const timePattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-](\d{2}):(\d{2}))$/;

/** An RFC 3339 time (2026-11-26T12:00:04.120Z, or with an offset) in ms since the epoch; null if it is not one. */
export function parseTime(text: string): number | null {
  const match = timePattern.exec(text);
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  if (daysInMonth === undefined || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return null;
  if (match[9] !== undefined && (Number(match[9]) > 23 || Number(match[10]) > 59)) return null;
  // Date.parse reads milliseconds: finer fractions are cut, not rounded, so a time never moves later.
  const ms = Date.parse(text.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(ms) ? null : ms;
}

/** A report as the request's check leaves it: an object with an id to answer it by, the rest unchecked. */
export type UncheckedReport = Record<string, unknown> & { id: string };

/** The request as a whole: 1 to 100 objects, each with an id to answer it by; the rest is checked report by report. */
export function checkReportsRequest(body: unknown): Checked<UncheckedReport[]> {
  if (!isObject(body)) return fail('the body must be a JSON object with a list of reports');
  const { reports } = body;
  if (!Array.isArray(reports)) return fail('reports must be a list');
  if (reports.length === 0) return fail('reports must hold at least one report');
  if (reports.length > limits.maxReportsPerRequest)
    return fail(`reports holds ${reports.length} reports; at most ${limits.maxReportsPerRequest} per request`);
  for (const [i, report] of reports.entries()) {
    if (!isObject(report)) return fail(`reports[${i}] must be an object`);
    const id = stringProblem(report.id, { min: 8, max: 100, pattern: idPattern, shape: 'visible ASCII characters, no spaces' });
    if (id) return fail(`reports[${i}].id ${id}`);
  }
  return { ok: true, value: reports as UncheckedReport[] };
}

export type CheckedReport = { report: Report; observedAtMs: number };

/** One report, field by field; the result holds only the fields of its type (anything else is dropped). */
export function checkReport(raw: Record<string, unknown>): Checked<CheckedReport> {
  const problem = (field: string, text: string | null) => (text === null ? null : `${field} ${text}`);
  const idProblem = stringProblem(raw.id, { min: 8, max: 100, pattern: idPattern, shape: 'visible ASCII characters, no spaces' });
  const first =
    problem('id', idProblem) ??
    problem(
      'vmId',
      stringProblem(raw.vmId, {
        min: 1,
        max: 17,
        pattern: capsulIdPattern,
        shape: 'a capsul id (capsul- and 10 lowercase letters or digits)',
      }),
    ) ??
    problem(
      'operationId',
      raw.operationId === null
        ? null
        : stringProblem(raw.operationId, {
            min: 1,
            max: 100,
            pattern: idPattern,
            shape: 'visible ASCII characters, no spaces',
            orNull: true,
          }),
    ) ??
    problem(
      'observedAt',
      stringProblem(raw.observedAt, { min: 1, max: 40, pattern: timePattern, shape: 'a time like 2026-11-26T12:00:04.120Z' }),
    );
  if (first) return fail(first);
  const observedAtMs = parseTime(raw.observedAt as string);
  if (observedAtMs === null) return fail(`observedAt ${JSON.stringify(raw.observedAt)} is not a valid time`);
  const base = {
    id: raw.id as string,
    vmId: raw.vmId as string,
    operationId: raw.operationId as string | null,
    observedAt: raw.observedAt as string,
  };
  const value = (report: Report): Checked<CheckedReport> => ({ ok: true, value: { report, observedAtMs } });
  switch (raw.type) {
    case 'provisioned': {
      const ipv4 = addressProblem(raw.ipv4, 'ipv4', 15, isIPv4) ?? addressProblem(raw.ipv6, 'ipv6', 45, isIPv6);
      if (ipv4) return fail(ipv4);
      const keys = hostKeys(raw.sshHostKeys);
      if (!keys.ok) return keys;
      return value({
        ...base,
        type: 'provisioned',
        ipv4: raw.ipv4 as string | null,
        ipv6: raw.ipv6 as string | null,
        sshHostKeys: keys.value,
      });
    }
    case 'state': {
      if (!observedStates.includes(raw.state as ObservedState)) return fail(`state must be one of ${observedStates.join(', ')}`);
      return value({ ...base, type: 'state', state: raw.state as ObservedState });
    }
    case 'failed': {
      const error = stringProblem(raw.error, { min: 0, max: limits.maxErrorLength, multiline: true });
      if (error) return fail(`error ${error}`);
      return value({ ...base, type: 'failed', error: raw.error as string });
    }
    case 'deleted':
      return value({ ...base, type: 'deleted' });
    default:
      return fail('type must be provisioned, state, failed or deleted');
  }
}

/** A heartbeat, field by field; the result holds only the protocol's fields. */
export function checkHeartbeat(body: unknown): Checked<Heartbeat> {
  if (!isObject(body)) return fail('the body must be a JSON object');
  const { capacity, vms, agentVersion } = body;
  if (!isObject(capacity)) return fail('capacity must be an object with memoryMb and vcpus');
  for (const field of ['memoryMb', 'vcpus'] as const) {
    const n = capacity[field];
    if (!Number.isSafeInteger(n) || (n as number) < 0 || (n as number) > maxCapacity)
      return fail(`capacity.${field} must be a whole number from 0 to ${maxCapacity}`);
  }
  if (!Array.isArray(vms)) return fail('vms must be a list');
  if (vms.length > limits.maxVmsPerHeartbeat) return fail(`vms lists ${vms.length} capsuls; at most ${limits.maxVmsPerHeartbeat}`);
  const listed: Heartbeat['vms'] = [];
  for (const [i, vm] of vms.entries()) {
    if (!isObject(vm)) return fail(`vms[${i}] must be an object`);
    const vmId = stringProblem(vm.vmId, {
      min: 1,
      max: 17,
      pattern: capsulIdPattern,
      shape: 'a capsul id (capsul- and 10 lowercase letters or digits)',
    });
    if (vmId) return fail(`vms[${i}].vmId ${vmId}`);
    if (!observedStates.includes(vm.state as ObservedState)) return fail(`vms[${i}].state must be one of ${observedStates.join(', ')}`);
    listed.push({ vmId: vm.vmId as string, state: vm.state as ObservedState });
  }
  const version = stringProblem(agentVersion, { min: 1, max: 100, pattern: printableAsciiPattern, shape: 'printable ASCII' });
  if (version) return fail(`agentVersion ${version}`);
  return {
    ok: true,
    value: {
      capacity: { memoryMb: capacity.memoryMb as number, vcpus: capacity.vcpus as number },
      vms: listed,
      agentVersion: agentVersion as string,
    },
  };
}

type StringRule = { min: number; max: number; pattern?: RegExp; shape?: string; multiline?: boolean; orNull?: boolean };

/** Why `value` is not a string of the rule's length and shape, or null. Text problems come first: they say the most. */
function stringProblem(value: unknown, rule: StringRule): string | null {
  if (typeof value !== 'string') return rule.orNull ? 'must be a string or null' : 'must be a string';
  const text = textProblem(value, rule.multiline);
  if (text) return text;
  if (value.length < rule.min || value.length > rule.max) {
    return rule.min === 0
      ? `is ${value.length} characters long; at most ${rule.max}`
      : `must be ${rule.min} to ${rule.max} characters long`;
  }
  if (rule.pattern && !rule.pattern.test(value)) return `must be ${rule.shape}`;
  return null;
}

function addressProblem(value: unknown, field: string, maxLength: number, valid: (text: string) => boolean): string | null {
  if (value === null) return null;
  const problem = stringProblem(value, { min: 1, max: maxLength, orNull: true });
  if (problem) return `${field} ${problem}`;
  return valid(value as string) ? null : `${field} must be an ${field === 'ipv4' ? 'IPv4' : 'IPv6'} address or null`;
}

function hostKeys(value: unknown): Checked<HostKeyFingerprint[]> {
  if (!Array.isArray(value)) return fail('sshHostKeys must be a list');
  if (value.length > limits.maxHostKeysPerReport)
    return fail(`sshHostKeys holds ${value.length} keys; at most ${limits.maxHostKeysPerReport}`);
  const keys: HostKeyFingerprint[] = [];
  for (const [i, key] of value.entries()) {
    if (!isObject(key)) return fail(`sshHostKeys[${i}] must be an object with type and sha256`);
    const type = stringProblem(key.type, { min: 1, max: 60, pattern: hostKeyTypePattern, shape: 'a key type like ssh-ed25519' });
    if (type) return fail(`sshHostKeys[${i}].type ${type}`);
    const sha256 = stringProblem(key.sha256, { min: 1, max: 120, pattern: idPattern, shape: 'visible ASCII characters, no spaces' });
    if (sha256) return fail(`sshHostKeys[${i}].sha256 ${sha256}`);
    keys.push({ type: key.type as string, sha256: key.sha256 as string });
  }
  return { ok: true, value: keys };
}

function describeCharacter(code: number): string {
  const name = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  if (code >= 0xd800 && code <= 0xdfff) return `a lone surrogate ${name}`;
  if (code <= 0x1f || (code >= 0x7f && code <= 0x9f)) return `${name} (a control character)`;
  if (code === 0x2028 || code === 0x2029) return `${name} (a line or paragraph separator)`;
  return `${name} (a bidirectional formatting character)`;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fail<T>(problem: string): Checked<T> {
  return { ok: false, problem };
}
