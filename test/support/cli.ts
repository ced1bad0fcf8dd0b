// Runs the CLI in-process against a fixture root and captures its output.
import { run } from '../../src/cli/main';
import type { Io } from '../../src/cli/context';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json<T = any>(): T;
}

export function cli(
  root: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  seams: Pick<Io, 'kernelIo' | 'beforeStep' | 'stdin'> = {},
): Promise<CliResult> {
  return cliArgs(['--root', root, ...args], env, seams);
}

/**
 * The CLI with exactly these arguments (no --root added): `--host-root DIR ...`, option clashes.
 */
export async function cliArgs(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  seams: Pick<Io, 'kernelIo' | 'beforeStep' | 'stdin'> = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    out: (s) => (stdout += s),
    err: (s) => (stderr += s),
    env,
    ...seams,
  });
  return { code, stdout, stderr, json: () => JSON.parse(stdout) };
}
