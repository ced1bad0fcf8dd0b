// The kernel model shared by CLI processes: the test process owns a KernelModel and serves it on
// a unix socket; each `vfioctl` child (remote-cli.ts) writes through it. Every write is checked
// against the lock (the writer must hold flock(2) on run/vfioctl/lock), so concurrency tests see
// any kernel write made without it. The server can also signal a writer at its Nth write.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { KernelIo } from '../../src/apply/kernel-io';
import type { KernelModel } from './kernel-model';

interface Request {
  readonly id: number;
  readonly pid: number;
  readonly op: 'write' | 'modprobe' | 'chown';
  readonly rel?: string;
  readonly value?: string;
  readonly args?: string[];
  readonly uid?: number;
  readonly gid?: number;
}

/** Inode of the lock file, and whether /proc/locks has a FLOCK WRITE lock on it. */
function lockedInode(file: string): { ino: number; locked: boolean } | null {
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (!st) return null;
  const locks = fs.readFileSync('/proc/locks', 'utf8');
  const locked = locks.split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
    return f[1] === 'FLOCK' && f[3] === 'WRITE' && Number(f[5]?.split(':')[2]) === st.ino;
  });
  return { ino: st.ino, locked };
}

export class ModelServer {
  readonly socket: string;
  /** Writes made by a process that did not hold the lock: must stay empty. */
  readonly violations: string[] = [];
  private server: net.Server | null = null;
  private readonly writesBy = new Map<number, number>();
  /** Signal a writer just before its Nth kernel write (1-based) is applied. */
  signalAt: { n: number; signal: NodeJS.Signals } | null = null;

  constructor(
    readonly root: string,
    readonly k: KernelModel,
  ) {
    this.socket = path.join(root, '..', `${path.basename(root)}.model.sock`);
  }

  private checkLock(r: Request): void {
    const file = path.join(this.root, 'run/vfioctl/lock');
    const l = lockedInode(file);
    const holder = Number((fs.readFileSync(file, 'utf8') || '').split('\n')[0]);
    if (!l?.locked || holder !== r.pid)
      this.violations.push(
        `pid ${r.pid} ${r.op} ${r.rel ?? r.args?.join(' ')}: lock ${l?.locked ? `held by ${holder}` : 'not held'}`,
      );
  }

  private async handle(r: Request): Promise<unknown> {
    try {
      this.checkLock(r);
    } catch (e) {
      this.violations.push(`pid ${r.pid} ${r.op}: no lock file (${(e as Error).message})`);
    }
    if (r.op === 'write') {
      const n = (this.writesBy.get(r.pid) ?? 0) + 1;
      this.writesBy.set(r.pid, n);
      if (this.signalAt?.n === n) {
        process.kill(r.pid, this.signalAt.signal);
        // The write is "in flight" while the signal lands: give the writer's event loop time to
        // take it (on a loaded machine its delivery can lag the reply).
        await new Promise((res) => setTimeout(res, 100));
      }
      try {
        await this.k.write(r.rel!, r.value!);
        return { ok: true };
      } catch (e) {
        return {
          ok: false,
          code: (e as NodeJS.ErrnoException).code,
          message: (e as Error).message,
        };
      }
    }
    if (r.op === 'modprobe') return { ok: true, result: await this.k.modprobe(r.args!) };
    await this.k.chown(r.rel!, r.uid!, r.gid!);
    return { ok: true };
  }

  async start(): Promise<this> {
    fs.rmSync(this.socket, { force: true });
    this.server = net.createServer((c) => {
      let buf = '';
      c.on('data', (d) => {
        buf += d.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const req = JSON.parse(line) as Request;
          void this.handle(req).then((res) =>
            c.write(JSON.stringify({ id: req.id, ...(res as object) }) + '\n'),
          );
        }
      });
      c.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.socket, resolve));
    return this;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
    fs.rmSync(this.socket, { force: true });
  }
}

/** The client side: a KernelIo that forwards to a ModelServer. */
export class RemoteKernelIo implements KernelIo {
  private conn: net.Socket | null = null;
  private next = 1;
  private buf = '';
  private readonly waiting = new Map<number, (r: any) => void>();

  constructor(private readonly socket: string) {}

  private connect(): net.Socket {
    if (this.conn) return this.conn;
    const c = net.createConnection(this.socket);
    c.on('data', (d) => {
      this.buf += d.toString();
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const res = JSON.parse(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
        this.waiting.get(res.id)?.(res);
        this.waiting.delete(res.id);
      }
    });
    // Idle between requests: it must not keep the CLI process alive.
    c.unref();
    this.conn = c;
    return c;
  }

  private call(req: Omit<Request, 'id' | 'pid'>): Promise<any> {
    const id = this.next++;
    const c = this.connect();
    c.ref();
    return new Promise((resolve) => {
      this.waiting.set(id, (r) => {
        if (this.waiting.size <= 1) c.unref();
        resolve(r);
      });
      c.write(JSON.stringify({ ...req, id, pid: process.pid }) + '\n');
    });
  }

  async write(rel: string, value: string): Promise<void> {
    const r = await this.call({ op: 'write', rel, value });
    if (!r.ok) throw Object.assign(new Error(r.message), { code: r.code });
  }

  async modprobe(args: readonly string[]): Promise<{ status: number; stderr: string }> {
    return (await this.call({ op: 'modprobe', args: [...args] })).result;
  }

  async chown(rel: string, uid: number, gid: number): Promise<void> {
    await this.call({ op: 'chown', rel, uid, gid });
  }
}
