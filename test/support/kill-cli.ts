// The CLI with a kill point, for the real-kernel suite's recovery scenarios: with
// VFIOCTL_TEST_KILL_AT=OP it dies by SIGKILL (as kill -9 would) just before the first step with
// that op. Test machinery: it reaches the executor through the same Io seam the unit tests use,
// and is never part of the shipped bundle.
import { run } from '../../src/cli/main';

const op = process.env.VFIOCTL_TEST_KILL_AT;
void run(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  env: process.env,
  ...(op
    ? {
        beforeStep: (_p, s) => {
          if (s.op === op) process.kill(process.pid, 'SIGKILL');
        },
      }
    : {}),
}).then((code) => {
  process.exitCode = code;
});
