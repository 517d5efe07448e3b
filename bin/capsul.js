#!/usr/bin/env node
// The `capsul` command: runs the TypeScript sources through tsx (no build step).
import os from 'node:os';
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
let user;
try {
  user = os.userInfo().username;
} catch {
  user = undefined;
}
const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  user,
  interactive: Boolean(process.stderr.isTTY),
});
process.exitCode = code;
// Flush and exit even if a library left a handle open.
process.stdout.write('', () => process.exit(code));
