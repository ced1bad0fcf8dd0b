// The part of Cockpit's base1/cockpit.js API this page uses (cockpit.js is loaded by index.html,
// not bundled: it is the bridge's own client and must match the installed Cockpit).
declare namespace cockpit {
  interface ProcessError {
    problem: string | null;
    exit_status: number | null;
    exit_signal: string | null;
    message: string;
  }
  /**
   * Cockpit's own deferred: callbacks get every value (stdout, then stderr with err: "message").
   */
  interface Spawned {
    then(
      ok: (data: string, message?: string) => void,
      fail: (ex: ProcessError, data?: string) => void,
    ): Spawned;
    stream(cb: (chunk: string) => void): Spawned;
    close(problem?: string): void;
  }
  interface SpawnOptions {
    superuser?: 'require' | 'try';
    environ?: string[];
    err?: 'out' | 'ignore' | 'message' | 'pty';
  }
  function spawn(args: string[], options?: SpawnOptions): Spawned;
  interface FileHandle {
    watch(
      cb: (content: string | null, tag: string | null) => void,
      options?: { read?: boolean },
    ): { remove(): void };
    close(): void;
  }
  function file(path: string, options?: { superuser?: 'require' | 'try' }): FileHandle;
  const manifests: Record<string, { config?: Record<string, unknown> } | undefined>;
  function gettext(s: string): string;
  function translate(): void;
  const location: { path: string[]; go(path: string[] | string): void };
  function addEventListener(ev: 'locationchanged', cb: () => void): void;
}
