// `vfioctl` as a separate process whose kernel is a ModelServer's (VFIOCTL_MODEL_SOCKET): what
// the concurrency and signal tests run. Test machinery: never part of the bundle.
import { run } from '../../src/cli/main';
import { RemoteKernelIo } from './remote-kernel';

const socket = process.env.VFIOCTL_MODEL_SOCKET;
if (!socket) throw new Error('VFIOCTL_MODEL_SOCKET is not set');
const io = new RemoteKernelIo(socket);
void run(process.argv.slice(2), {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  env: process.env,
  kernelIo: () => io,
}).then((code) => {
  process.exitCode = code;
});
