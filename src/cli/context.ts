// What every command gets: the host root, the kernel release, and where to write.
import { HostRoot } from '../host/root';

export interface GlobalOptions {
  root?: string;
  kernel?: string;
  nosave?: boolean;
  noprobe?: boolean;
  bus?: string;
}

export interface Io {
  out(s: string): void;
  err(s: string): void;
  env: NodeJS.ProcessEnv;
}

export interface Context {
  readonly root: HostRoot;
  readonly kernel: string | undefined;
  readonly io: Io;
  /** driverctl's options given before its verb. */
  readonly flags: { readonly nosave?: boolean; readonly noprobe?: boolean; readonly bus?: string };
}

export function makeContext(g: GlobalOptions, io: Io): Context {
  return { root: new HostRoot(g.root ?? io.env.VFIOCTL_ROOT ?? '/'), kernel: g.kernel, io, flags: { nosave: g.nosave, noprobe: g.noprobe, bus: g.bus } };
}

export function printWarnings(ctx: Context, warnings: readonly string[]): void {
  for (const w of warnings) ctx.io.err(`vfioctl: warning: ${w}\n`);
}
