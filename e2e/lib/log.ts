// Progress lines for the host side, stamped with the time since the run started.
const T0 = Date.now();

function elapsed(): string {
  return `${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s`;
}

export function log(msg: string): void {
  process.stderr.write(`[e2e ${elapsed()}] ${msg}\n`);
}

export function formatMs(ms: number): string {
  return ms < 1000
    ? `${ms}ms`
    : ms < 120_000
      ? `${(ms / 1000).toFixed(1)}s`
      : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}
