// The page's shared state and its runs of vfioctl: the loaded JSON, the progress region, the
// busy flag tests wait on, reloading, and watching the files that say something changed.
import { hostPath, runVfioctl, type PageConfig } from './cli';
import { h, replace } from './dom';
import {
  NO_FILTER,
  exitMeaning,
  stderrLines,
  type Device,
  type Doctor,
  type Filter,
  type Sort,
  type Status,
} from './logic';

export const _ = (s: string): string => cockpit.gettext(s);

interface State {
  devices: Device[] | null;
  status: Status | null;
  doctor: Doctor | null;
  loadErrors: string[];
  filter: Filter;
  sort: Sort;
  /** A dialog is open: redraws must not pull the page from under it. */
  dialogOpen: boolean;
}

export const state: State = {
  devices: null,
  status: null,
  doctor: null,
  loadErrors: [],
  filter: { ...NO_FILTER },
  sort: { key: 'address', dir: 'asc' },
  dialogOpen: false,
};
let cfg: PageConfig;
let progress: HTMLElement;
let redraw: () => void = () => undefined;
const running = new Set<string>();

/**
 * Called once by index.ts: the configuration, the progress region, and how to redraw the current
 * view.
 */
export function setup(c: PageConfig, progressRegion: HTMLElement, render: () => void): void {
  cfg = c;
  progress = progressRegion;
  redraw = render;
}

// ---- progress: every vfioctl run shows in one live region ----

function showProgress(): void {
  progress.hidden = running.size === 0;
  replace(
    progress,
    running.size
      ? [
          h(
            'span',
            { class: 'pf-c-spinner pf-m-md', role: 'progressbar', 'aria-valuetext': _('Working') },
            h('span', { class: 'pf-c-spinner__clipper' }),
            h('span', { class: 'pf-c-spinner__lead-ball' }),
            h('span', { class: 'pf-c-spinner__tail-ball' }),
          ),
          h('span', null, [...running].join('; ')),
        ]
      : [],
  );
}

/**
 * body[data-busy] is "true" while an operation (its vfioctl runs and the drawing after) is under
 * way; tests wait on it.
 */
let operations = 0;
export async function operation<T>(fn: () => Promise<T>): Promise<T> {
  operations++;
  document.body.setAttribute('data-busy', 'true');
  try {
    return await fn();
  } finally {
    if (--operations === 0) document.body.setAttribute('data-busy', 'false');
  }
}

export async function tracked<T>(
  what: string,
  args: string[],
): Promise<{ code: number; data: T | null; stderr: string }> {
  const key = `${what} (vfioctl ${args.filter((a) => a !== '--json').join(' ')})`;
  running.add(key);
  showProgress();
  try {
    return await runVfioctl<T>(cfg, args);
  } finally {
    running.delete(key);
    showProgress();
  }
}

// ---- loading ----

let loading: Promise<void> | null = null;
let reloadAgain = false;

/** Reads list, status and doctor; a reload asked for while one runs runs once more after it. */
export function reload(): Promise<void> {
  if (loading) {
    reloadAgain = true;
    return loading;
  }
  loading = operation(async () => {
    do {
      reloadAgain = false;
      const [list, status, doctor] = await Promise.all([
        tracked<Device[]>(_('Reading devices'), ['list', '--json']).catch((e: Error) => ({
          code: -1,
          data: null,
          stderr: e.message,
        })),
        tracked<Status>(_('Reading configuration status'), ['status', '--json']).catch(
          (e: Error) => ({ code: -1, data: null, stderr: e.message }),
        ),
        tracked<Doctor>(_('Checking the host'), ['doctor', '--json']).catch((e: Error) => ({
          code: -1,
          data: null,
          stderr: e.message,
        })),
      ]);
      const errors: string[] = [];
      const take = <T>(
        what: string,
        r: { code: number; data: T | null; stderr: string },
      ): T | null => {
        if (r.data !== null) return r.data;
        errors.push(`${what}: ${stderrLines(r.stderr).join(' ') || exitMeaning(r.code)}`);
        return null;
      };
      state.devices = take('vfioctl list', list);
      state.status = take('vfioctl status', status);
      state.doctor = take('vfioctl doctor', doctor);
      state.loadErrors = errors;
      redraw();
    } while (reloadAgain);
    loading = null;
  });
  return loading;
}

/** state.json (what apply did) and boot.json (this boot's outcome) change under us: refresh. */
export function watchState(): void {
  let timer: number | undefined;
  for (const p of ['/var/lib/vfioctl/state.json', '/run/vfioctl/boot.json']) {
    let first = true;
    cockpit.file(hostPath(cfg, p), { superuser: 'try' }).watch(() => {
      if (first) {
        first = false; // the watch reports the current content once when it starts
        return;
      }
      window.clearTimeout(timer);
      timer = window.setTimeout(() => void reload(), 200);
    });
  }
}
