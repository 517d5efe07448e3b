// `capsul <args>` run in this process, as an operator would run it, against the environment given (a
// test database's, a data directory of the test's own): what it printed and its exit code.
import type { CliIo } from '../../src/cli/context.ts';
import { main } from '../../src/cli/main.ts';

export type CliRun = { code: number; stdout: string; stderr: string };

export async function capsulHere(args: string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env,
    user: 'alice',
    interactive: false,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}
