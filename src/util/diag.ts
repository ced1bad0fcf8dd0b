// Warnings collected while reading the host: malformed input lines are skipped, never fatal.
export class Diagnostics {
  readonly warnings: string[] = [];

  warn(msg: string): void {
    this.warnings.push(msg);
  }
}

/** An error that carries the process exit code the CLI must use (2 = bad input, 3 = refused...). */
export class VfioctlError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'VfioctlError';
  }
}

/**
 * 0 done; 1 failed (and rolled back); 2 bad input; 3 refused by a safety check; 4 another vfioctl
 * held the lock for longer than --wait (nothing was done: safe to retry); 5 `status` ran and some
 * configured device is not as configured (a monitoring check: distinct from 1/2, which mean
 * status itself could not tell).
 */
export const EXIT = { OK: 0, FAILED: 1, BAD_INPUT: 2, REFUSED: 3, LOCKED: 4, DRIFT: 5 } as const;
