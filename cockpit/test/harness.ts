// Browser-test harness: a model host (fixture tree + kernel model, served to the page's vfioctl
// processes by test/support/remote-kernel.ts), Debian's cockpit-ws serving the
// built page from a private XDG_DATA_HOME with a manifest override pointing it at the fixture, and
// Debian's Chromium driven by playwright-core. One cockpit-ws per test: 287's --local-session
// ends 15 s after the browser leaves.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ModelHost, isRoot, type ModelHostOptions } from '../../test/support/model-host';
import { ModelServer } from '../../test/support/remote-kernel';

const REPO = path.resolve(__dirname, '../../..');
const PAGE = path.join(REPO, 'dist/cockpit/vfioctl');
// vfioctl as a separate process whose kernel is the test's model (served on a unix socket).
// One bundled file (scripts/bundle.mjs), as the package installs the CLI: the page runs it often.
const REMOTE_CLI = path.join(REPO, 'build/test/support/remote-cli.bundle.js');
const WS = '/usr/lib/cockpit/cockpit-ws';
export const SHOTS = path.join(REPO, 'build/cockpit-shots');

let browser: Browser | null = null;

export async function launchBrowser(): Promise<Browser> {
  // The flags the machine notes ask for: root needs --no-sandbox; no GPU; no calls home.
  browser ??= await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return browser;
}

export async function closeBrowser(): Promise<void> {
  await browser?.close();
  browser = null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitHttp(url: string, ws: ChildProcess, log: () => string): Promise<void> {
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    if (ws.exitCode !== null) throw new Error(`cockpit-ws exited ${ws.exitCode}: ${log()}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`cockpit-ws did not answer ${url}: ${log()}`);
}

export interface Session {
  host: ModelHost;
  page: Page;
  /** The page's own URL (no shell frame). */
  url: string;
  close(): Promise<void>;
}

/**
 * A model host, a cockpit-ws for it, and a browser page on vfioctl's Cockpit page. As root (CI)
 * the page spawns vfioctl with its production default, superuser "require"; as a normal user it
 * spawns it as that user and trusts that user's fixture files.
 */
export async function openSession(
  opts: ModelHostOptions & { viewport?: { width: number; height: number } } = {},
): Promise<Session> {
  // trustSelf: the test's own in-process vfioctl runs trust a normal user's fixture files too.
  const host = new ModelHost(opts).trustSelf();
  // pci.ids names for the model host's devices (QEMU's), so the page shows names as on a real host.
  host.f.pciIds(
    '1af4  Red Hat, Inc.\n\t1041  Virtio 1.0 network device\n1b36  Red Hat, Inc.\n\t0010  QEMU NVM Express Controller\n8086  Intel Corporation\n\t10d3  82574L Gigabit Network Connection\n\t2918  82801IB (ICH9) LPC Interface Controller\n\t2930  82801I (ICH9 Family) SMBus Controller\n' +
      'C 01  Mass storage controller\n\t08  Non-Volatile memory controller\nC 02  Network controller\n\t00  Ethernet controller\nC 06  Bridge\n\t01  ISA bridge\nC 0c  Serial bus controller\n\t05  SMBus\n',
  );
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-cockpit-'));
  fs.mkdirSync(path.join(home, 'data/cockpit'), { recursive: true });
  fs.mkdirSync(path.join(home, 'config/cockpit'), { recursive: true });
  fs.symlinkSync(PAGE, path.join(home, 'data/cockpit/vfioctl'));
  // The page's vfioctl processes write through host.k, like the test's own in-process runs; the
  // server also records any kernel write made without the lock.
  const server = await new ModelServer(host.f.dir, host.k).start();
  const config = {
    command: [process.execPath, REMOTE_CLI],
    root: host.f.dir,
    environ: [
      `VFIOCTL_MODEL_SOCKET=${server.socket}`,
      ...(isRoot ? [] : [`VFIOCTL_TRUST_UID=${process.getuid!()}`]),
    ],
    superuser: isRoot ? 'require' : 'none',
  };
  fs.writeFileSync(
    path.join(home, 'config/cockpit/vfioctl.override.json'),
    JSON.stringify({ config }),
  );
  const port = await freePort();
  let log = '';
  const ws = spawn(
    WS,
    [
      '--no-tls',
      `--local-session=cockpit-bridge`,
      '--port',
      String(port),
      '--address',
      '127.0.0.1',
    ],
    {
      env: {
        ...process.env,
        XDG_DATA_HOME: path.join(home, 'data'),
        XDG_CONFIG_HOME: path.join(home, 'config'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so the bridge it starts goes with it
    },
  );
  ws.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  ws.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const base = `http://127.0.0.1:${port}/cockpit/@localhost`;
  const stop = async () => {
    if (ws.exitCode === null && ws.pid) {
      const gone = new Promise((r) => ws.once('exit', r));
      process.kill(-ws.pid, 'SIGTERM');
      await gone;
    }
    await server.close();
    fs.rmSync(home, { recursive: true, force: true });
    host.cleanup();
  };
  let context: BrowserContext | null = null;
  try {
    await waitHttp(`${base}/manifests.json`, ws, () => log);
    const b = await launchBrowser();
    context = await b.newContext({ viewport: opts.viewport ?? { width: 1280, height: 800 } });
    const page = await context.newPage();
    const url = `${base}/vfioctl/index.html`;
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      // CSP violations are reported on the console: a page that breaks Cockpit's CSP fails here.
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(url);
    return {
      host,
      page,
      url,
      close: async () => {
        await context?.close();
        const unlocked = [...server.violations];
        await stop();
        if (errors.length) throw new Error(`browser errors on the page:\n${errors.join('\n')}`);
        if (unlocked.length)
          throw new Error(`kernel writes without vfioctl's lock:\n${unlocked.join('\n')}`);
      },
    };
  } catch (e) {
    await context?.close();
    await stop();
    throw e;
  }
}

/** Waits until no vfioctl run is in progress and the device table is drawn. */
export async function settled(page: Page): Promise<void> {
  await page.waitForSelector('body[data-busy="false"]');
}

export async function shot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
