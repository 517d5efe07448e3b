// safeReturnPath: the one check of where a login may return to. Whatever it is given, what it gives
// back is the input or /console, a printable ASCII path that a browser resolves to this site.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { maxReturnPathLength, safeReturnPath } from '../../src/hub/web/session.ts';

const base = 'https://capsul.example';
/** How browsers read a Location: tabs and line breaks dropped, `\` as `/`, resolved against the page. */
const browserTarget = (location: string) => new URL(location.replace(/[\t\n\r]/g, ''), base);

describe('safeReturnPath', () => {
  it('keeps paths of this site, query strings and escapes of printable text included', () => {
    for (const path of [
      '/console',
      '/console?page=2',
      '/console/ssh',
      '/faq#x',
      '/console/x%20y',
      '/a/../b',
      '/%7Euser',
      `/${'a'.repeat(maxReturnPathLength - 1)}`,
    ]) {
      assert.equal(safeReturnPath(path), path);
    }
  });

  const refused: [string, unknown][] = [
    ['not text', 42],
    ['absent', undefined],
    ['a list', ['/console/ssh']],
    ['empty', ''],
    ['another site', 'https://evil.example/'],
    ['a scheme', 'javascript:alert(1)'],
    ['relative', 'console'],
    ['protocol-relative', '//evil.example'],
    ['a backslash', '/\\evil.example'],
    ['an encoded backslash', '/%5Cevil.example'],
    ['encoded slashes', '/%2F%2Fevil.example'],
    ['an encoded slash after the first', '/%2f/evil.example'],
    ['a fullwidth full stop, encoded', '/%EF%BC%8E/evil.example'],
    ['a fullwidth full stop', '/\uff0e/evil.example'],
    ['a tab', '/\t/evil.example'],
    ['an encoded tab', '/%09/evil.example'],
    ['CR LF', '/console\r\nSet-Cookie: a=b'],
    ['encoded CR LF', '/console%0D%0ASet-Cookie:%20a=b'],
    ['NUL', '/console\u0000'],
    ['encoded NUL', '/console%00'],
    ['a space', '/console page'],
    ['a line separator', '/console\u2028'],
    ['a malformed escape', '/console%'],
    ['an overlong escape', '/%C0%AF'],
    ['an escape that is not UTF-8', '/console?x=%FF'],
    ['too long', `/${'a'.repeat(maxReturnPathLength)}`],
    ['a login page', '/auth/login'],
    ['a login link', '/auth/magic/abc'],
    ['a login page, encoded', '/%61uth/login'],
  ];
  for (const [what, next] of refused) {
    it(`turns ${what} into the console`, () => {
      assert.equal(safeReturnPath(next), '/console');
    });
  }

  it('whatever it is given: the input or /console, safe as a header, and never off the site', () => {
    const pathLike = fc
      .array(
        fc.oneof(
          fc.constantFrom(
            '/',
            '//',
            '\\',
            '%',
            '%2F',
            '%5C',
            '%0D%0A',
            '%EF%BC%8E',
            '%C0%AF',
            '%FF',
            '.',
            '..',
            '?',
            '#',
            'evil.example',
            'console',
            '\t',
            '\r\n',
            '\u0000',
            '\uff0e',
            ' ',
          ),
          fc.string({ maxLength: 4 }),
          fc.string({ unit: 'grapheme', maxLength: 2 }),
        ),
        { maxLength: 12 },
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(pathLike, (next) => {
        const kept = safeReturnPath(next);
        assert.ok(kept === '/console' || kept === next);
        assert.match(kept, /^\/[\x21-\x7e]*$/);
        assert.equal(browserTarget(kept).origin, base);
        assert.equal(browserTarget(decodeURIComponent(kept)).origin, base, 'decoded once more, as a careless proxy might');
      }),
      { numRuns: 5000 },
    );
  });
});
