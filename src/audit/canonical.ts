// RFC 8785 (JCS) canonical JSON: the exact bytes a log leaf is hashed over, so any JCS implementation
// elsewhere reproduces them. Only I-JSON-exact values are accepted; anything that would not survive a
// JSON round trip unchanged is refused rather than silently coerced.

/** Nesting deeper than this is refused: a guard against cycles and runaway input, not a format rule. */
export const maxCanonicalDepth = 100;

type JsonObject = { readonly [key: string]: unknown };

/** The canonical (RFC 8785) JSON text of `value`; throws a one-line Error for anything not I-JSON-exact. */
export function canonicalJson(value: unknown): string {
  try {
    return fast(value, 0);
  } catch (error) {
    if (error !== notCanonical) throw error;
    // Rare: walk again, keeping the path, to say where and why.
    return serialise(value, '$', 0);
  }
}

/**
 * The same bytes for a value JSON.parse produced (an event read back from the store), faster: parsed
 * JSON holds only plain objects, finite numbers and well-formed strings, so nothing needs checking but
 * integers beyond 2^53 — which are written as JavaScript reads them, deterministically, where
 * canonicalJson would refuse: an event written behind capsul's back still gets a leaf, and the
 * standalone verifier reports its line as not I-JSON. (Members are written in sorted order by hand:
 * JavaScript objects put integer-like keys first, whatever order they were added in.)
 */
export function canonicalJsonOfParsed(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let text = '[';
    for (let index = 0; index < value.length; index++) text += `${index > 0 ? ',' : ''}${canonicalJsonOfParsed(value[index])}`;
    return `${text}]`;
  }
  const keys = Object.keys(value).sort();
  let text = '{';
  for (let i = 0; i < keys.length; i++) {
    text += `${i > 0 ? ',' : ''}${JSON.stringify(keys[i])}:${canonicalJsonOfParsed((value as JsonObject)[keys[i]!])}`;
  }
  return `${text}}`;
}

// The hot path (every event is canonicalised when sealed and again when verified): no paths, no
// messages; anything unusual throws `notCanonical` and the slow walk below explains it.
const notCanonical = new Error('not canonical JSON');

function fast(value: unknown, depth: number): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value) || (Number.isInteger(value) && !Number.isSafeInteger(value))) throw notCanonical;
      return String(value);
    case 'string':
      if (!value.isWellFormed()) throw notCanonical;
      return JSON.stringify(value);
    case 'object': {
      if (depth >= maxCanonicalDepth) throw notCanonical;
      if (Array.isArray(value)) {
        let text = '[';
        for (let index = 0; index < value.length; index++) text += `${index > 0 ? ',' : ''}${fast(value[index], depth + 1)}`;
        return `${text}]`;
      }
      if (!isPlainObject(value) || Object.getOwnPropertySymbols(value).length > 0) throw notCanonical;
      const keys = Object.keys(value).sort();
      let text = '{';
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!;
        if (!key.isWellFormed()) throw notCanonical;
        text += `${i > 0 ? ',' : ''}${JSON.stringify(key)}:${fast(value[key], depth + 1)}`;
      }
      return `${text}}`;
    }
    default:
      throw notCanonical;
  }
}

function serialise(value: unknown, path: string, depth: number): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return serialiseNumber(value, path);
    case 'string':
      return serialiseString(value, path);
    case 'object':
      if (depth >= maxCanonicalDepth) throw refusal(path, `nests deeper than ${maxCanonicalDepth} levels`);
      if (Array.isArray(value)) return serialiseArray(value, path, depth + 1);
      if (isPlainObject(value)) return serialiseObject(value, path, depth + 1);
      throw refusal(path, `is a ${value.constructor?.name ?? 'non-plain'} object, not a plain object or array`);
    default:
      // undefined, function, bigint, symbol: JSON.stringify would drop or throw; we refuse, by name.
      throw refusal(path, `is ${typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`}, which JSON cannot carry`);
  }
}

// RFC 8785 §3.2.2.3: numbers are written as ES Number.prototype.toString writes them (so -0 is "0").
function serialiseNumber(value: number, path: string): string {
  if (!Number.isFinite(value)) throw refusal(path, `is ${value}, which JSON cannot carry`);
  // Integers beyond ±(2^53−1) are not exactly representable in every I-JSON parser (RFC 7493 §2.2).
  if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
    throw refusal(path, `is ${value}, an integer beyond ±(2^53−1) that would not survive a round trip`);
  }
  return String(value);
}

// JSON.stringify escapes exactly as RFC 8785 §3.2.2.2 prescribes, once lone surrogates are excluded.
function serialiseString(value: string, path: string): string {
  if (/\p{Surrogate}/u.test(value)) throw refusal(path, 'holds a lone UTF-16 surrogate, which is not Unicode text');
  return JSON.stringify(value);
}

function serialiseArray(items: readonly unknown[], path: string, depth: number): string {
  const parts: string[] = [];
  // An index loop (not map) so holes in sparse arrays are seen, as undefined, and refused.
  for (let index = 0; index < items.length; index++) {
    parts.push(serialise(items[index], `${path}[${index}]`, depth));
  }
  return `[${parts.join(',')}]`;
}

// RFC 8785 §3.2.3: members sorted by their names' UTF-16 code units, which is what the default sort compares.
function serialiseObject(object: JsonObject, path: string, depth: number): string {
  if (Object.getOwnPropertySymbols(object).length > 0) throw refusal(path, 'has symbol keys, which JSON cannot carry');
  const keys = Object.keys(object).sort();
  const members = keys.map((key) => {
    const memberPath = `${path}[${JSON.stringify(key)}]`;
    return `${serialiseString(key, memberPath)}:${serialise(object[key], memberPath, depth)}`;
  });
  return `{${members.join(',')}}`;
}

function isPlainObject(value: object): value is JsonObject {
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function refusal(path: string, reason: string): Error {
  return new Error(`not canonical JSON: ${path} ${reason}`);
}
