// The boot layers (README.md, "Boot"): per-kernel maps, the early unit, the udev rule, initramfs
// hooks (initramfs-tools and dracut), kernel postinst hooks and the late apply unit. What
// `vfioctl install` writes or removes, and the map refresh every configuration change triggers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostRoot } from '../host/root';
import { readSnapshot, readModuleState } from '../read/snapshot';
import { readBootDevices } from '../host/boot-devices';
import { loadConfig } from '../config/load';
import { CONFIG_FILE, type Config } from '../config/types';
import { writeConfig } from '../config/edit';
import {
  BOOT_DIR,
  bootMapJsonPath,
  computeBootMap,
  describeLeftOut,
  formatBootMap,
  formatBootMapJson,
  parseBootMapJson,
  parseMapEntries,
  readVfLayout,
  type BootMap,
  type LeftOut,
  type VfLayout,
} from '../boot/map';
import { Invalid } from '../persist/validate';
import * as files from '../boot/files';
import { atomicWrite } from '../persist/records';
import { Diagnostics, EXIT, VfioctlError } from '../util/diag';
import { untrustedReason, type TrustPolicy } from '../host/trust';
import type { Host } from './host';

interface BootFile {
  readonly path: string;
  readonly mode: number;
  /** File content, or the target of a symlink (systemctl enable's wants/ links). */
  readonly content?: string;
  readonly link?: string;
}

const EARLY_UNIT = `${files.LOCAL_LAYOUT.units}/${files.EARLY_UNIT_NAME}`;

/**
 * Packaged mode: the Debian package owns the static layers (dpkg's files are never written here),
 * so `install` writes only the host-specific parts and enables the package's units.
 */
function layoutOf(root: HostRoot): files.Layout {
  return root.exists(files.PACKAGED_MARKER) ? files.PACKAGE_LAYOUT : files.LOCAL_LAYOUT;
}

/** What `install` owns besides the maps and the udev rule. */
function staticFiles(layout: files.Layout, vfioctl: string): BootFile[] {
  return [
    ...(layout.packaged ? [] : files.staticLayers(layout, vfioctl)),
    ...files.unitLinks(layout).map((l) => ({ ...l, mode: 0o777 })),
  ];
}

/** Kernels with a module tree under the root. */
function installedKernels(root: HostRoot): string[] {
  return root
    .list('/lib/modules')
    .filter(
      (k) =>
        root.exists(`/lib/modules/${k}/modules.dep`) ||
        root.exists(`/lib/modules/${k}/modules.alias`),
    )
    .sort();
}

const INITRAMFS_STALE =
  "the initramfs still carries the previous boot map and takes its devices at every boot until it is rebuilt: run 'update-initramfs -u -k all' (or 'dracut --regenerate-all')";

function initramfsInstalled(root: HostRoot): boolean {
  return (
    root.exists(`${layoutOf(root).initramfsTools}/hooks/vfioctl`) ||
    root.exists('/usr/lib/dracut/modules.d/90vfioctl/module-setup.sh')
  );
}

export function isInstalled(root: HostRoot): boolean {
  return root.exists(EARLY_UNIT) || root.exists(BOOT_DIR);
}

/** Maps for `kernels` from the configuration as it is now. Throws on a broken configuration. */
function computeMaps(
  root: HostRoot,
  policy: TrustPolicy,
  kernels: readonly string[],
  given?: Config,
): { maps: BootMap[]; warnings: string[] } {
  const config = given ?? loadConfig(root, policy);
  const base = readSnapshot(root, { kernel: kernels[0], trust: policy });
  const boot = readBootDevices(root);
  const layouts = new Map<string, VfLayout>();
  for (const r of config.rules) {
    if (r.selector.kind !== 'address' || !r.sriov) continue;
    const l = readVfLayout(root, r.selector.address);
    if (l) layouts.set(r.selector.address, l);
  }
  const warnings = boot.unresolved.map(
    (u) =>
      `boot device ${u} could not be traced to a PCI device: it is not protected by name at boot`,
  );
  const maps = kernels.map((k) => {
    const diag = new Diagnostics();
    const snap = { ...base, modules: readModuleState(root, k, diag, true) };
    return computeBootMap(snap, config, boot, layouts);
  });
  return { maps, warnings };
}

function writeFile(root: HostRoot, f: BootFile): 'wrote' | 'unchanged' {
  // The entry is replaced (symlink, or rename over it), never followed: its directory must stay
  // inside.
  const abs = root.confineEntry(f.path);
  if (f.link !== undefined) {
    let cur: string | undefined;
    try {
      cur = fs.readlinkSync(abs);
    } catch {
      cur = undefined;
    }
    if (cur === f.link) return 'unchanged';
    fs.mkdirSync(path.dirname(abs), { recursive: true, mode: 0o755 });
    fs.rmSync(abs, { force: true });
    fs.symlinkSync(f.link, abs);
    return 'wrote';
  }
  if (root.readFile(f.path) === f.content) return 'unchanged';
  atomicWrite(abs, f.content!, f.mode, 0o755);
  return 'wrote';
}

/**
 * What vfioctl knows of the map it wrote for `kernel`, or why it cannot know (named, never
 * guessed).
 */
export interface StoredMap {
  readonly map: BootMap | null;
  readonly problem: string | null;
}

/**
 * A map as written: its JSON (checked), which says what was left out and why. A map without one
 * (an older vfioctl wrote it) still gives its entries (the lines the early script reads).
 */
export function readStoredMap(root: HostRoot, kernel: string): StoredMap {
  const json = bootMapJsonPath(kernel);
  const text = root.readFile(json);
  const refresh = "'vfioctl install --refresh' rewrites it";
  if (text !== undefined) {
    try {
      const m = parseBootMapJson(text);
      if (m.kernel !== kernel)
        return {
          map: null,
          problem: `${root.path(json)}: made for kernel ${m.kernel}, not ${kernel}; ignored: ${refresh}`,
        };
      return { map: m, problem: null };
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      return { map: null, problem: `${root.path(json)}: ${e.message}; ignored: ${refresh}` };
    }
  }
  const mapText = root.readFile(`${BOOT_DIR}/${kernel}.map`);
  if (mapText === undefined) return { map: null, problem: null };
  return {
    map: { kernel, entries: parseMapEntries(mapText), leftOut: [] },
    problem: `${root.path(json)} is missing (the map was made by an older vfioctl): what it left out is not known; ${refresh}`,
  };
}

function mapFiles(root: HostRoot, maps: readonly BootMap[], source = CONFIG_FILE): BootFile[] {
  const kernels = new Set(maps.map((m) => m.kernel));
  // Maps of kernels not refreshed this time are kept: the udev rule covers every installed kernel.
  const kept = root
    .list(BOOT_DIR)
    .filter(
      (f) =>
        f.endsWith('.map') &&
        !kernels.has(f.slice(0, -4)) &&
        root.exists(`/lib/modules/${f.slice(0, -4)}`),
    )
    .flatMap((f) => readStoredMap(root, f.slice(0, -4)).map ?? []);
  const all = [...maps, ...kept].sort((a, b) => (a.kernel < b.kernel ? -1 : 1));
  return [
    ...maps.flatMap((m) => [
      { path: `${BOOT_DIR}/${m.kernel}.map`, mode: 0o644, content: formatBootMap(m, source) },
      { path: bootMapJsonPath(m.kernel), mode: 0o644, content: formatBootMapJson(m, source) },
    ]),
    { path: files.UDEV_RULES, mode: 0o644, content: files.udevRules(all) },
  ];
}

/**
 * Writes a new configuration and, when the boot layers are installed, the maps made from it.
 * The caller holds the lock (a configuration edit is a read-modify-write). Returns warnings.
 */
export function saveConfig(host: Host, text: string): string[] {
  writeConfig(host.root, text);
  return refreshBootMaps(host);
}

/** After the configuration changed: new maps and udev rule, when the boot layers are installed. */
export function refreshBootMaps(host: Host, kernel?: string): string[] {
  if (!isInstalled(host.root)) return [];
  const kernels = kernel ? [kernel] : installedKernels(host.root);
  if (kernels.length === 0)
    return [
      `no kernel module trees under ${host.root.path('/lib/modules')}: boot maps not written`,
    ];
  const { maps, warnings } = computeMaps(host.root, host.trust, kernels);
  const changed = mapFiles(host.root, maps).filter(
    (f) => writeFile(host.root, f) === 'wrote' && f.path.endsWith('.map'),
  );
  if (changed.length && initramfsInstalled(host.root)) warnings.push(INITRAMFS_STALE);
  return warnings;
}

function execPath(root: HostRoot, given: string | undefined, policy: TrustPolicy): string {
  // Under --host-root this process is a container's: its own path means nothing to the host's boot.
  if (root.hostMount && given === undefined)
    throw new VfioctlError(
      `--host-root ${root.dir}: the units run vfioctl on the host at boot: give --exec PATH, its path on the host (or install the Debian package on the host)`,
      EXIT.BAD_INPUT,
    );
  const p =
    given ??
    (/^vfioctl(\.js)?$/.test(path.basename(process.argv[1] ?? ''))
      ? fs.realpathSync(process.argv[1]!)
      : '/usr/local/bin/vfioctl');
  if (!path.isAbsolute(p) || /[\s"'\\$`]/.test(p))
    throw new VfioctlError(
      `--exec '${p}': must be an absolute path without spaces or quotes (it goes into unit files)`,
      EXIT.BAD_INPUT,
    );
  // Boot runs it as root: it must not be a file a non-root user could replace. Under --host-root
  // the path given is one on the host, so it is checked under the root.
  const rel =
    root.isLive || root.hostMount ? p : p.startsWith(root.dir + '/') ? root.hostPath(p) : null;
  if (rel !== null && root.exists(rel)) {
    // The launcher (dist/vfioctl) runs the bundle beside it: that file runs as root at boot too.
    const bundle = `${path.posix.dirname(rel)}/vfioctl.js`;
    for (const f of path.basename(rel) === 'vfioctl' && root.exists(bundle)
      ? [rel, bundle]
      : [rel]) {
      const why = untrustedReason(root, f, policy);
      if (why)
        throw new VfioctlError(
          `refusing to install units that run ${p} as root at boot: ${f === rel ? '' : `${path.posix.dirname(p)}/vfioctl.js, the program it starts: `}${why}; install vfioctl root-owned (e.g. /usr/local/bin/vfioctl) and pass --exec`,
          EXIT.REFUSED,
        );
    }
  }
  return p;
}

export interface InstallOptions {
  readonly dryRun?: boolean;
  readonly uninstall?: boolean;
  readonly refresh?: boolean;
  /** The vfioctl the units run (non-packaged mode). */
  readonly exec?: string;
  /** Make the maps from this configuration instead of the host's file (`install --config FILE`). */
  readonly config?: Config;
  /** Only the libvirt qemu hook (/etc/libvirt/hooks/qemu.d/50-vfioctl), not the boot layers. */
  readonly libvirt?: boolean;
}

export interface InstallFile {
  readonly path: string;
  readonly action:
    | 'wrote'
    | 'unchanged'
    | 'would write'
    | 'removed'
    | 'would remove'
    | 'absent'
    | 'kept (not written by vfioctl)'
    | "kept (the package's)"
    | 'failed';
  /** Why a `failed` file could not be written or removed (errno code and message). */
  readonly error?: string;
}

/** Files install planned and could not write or remove (install exits 1 when there are any). */
export function failedFiles(r: InstallReport): readonly InstallFile[] {
  return r.files.filter((f) => f.action === 'failed');
}

function errorText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code} (${err.message})` : String(err.message ?? e);
}

export interface InstallReport {
  readonly uninstall: boolean;
  /** The Debian package's static layers are used (only the host's parts are written). */
  readonly packaged: boolean;
  readonly dryRun: boolean;
  readonly refresh: boolean;
  /**
   * Every file considered, and what was (or would be) done with it; `failed` ones carry the error.
   */
  readonly files: readonly InstallFile[];
  /** Per kernel: how many entries, and what was left out (in words, and as reasons). */
  readonly maps: readonly {
    readonly kernel: string;
    readonly entries: number;
    readonly skipped: readonly string[];
    readonly leftOut: readonly LeftOut[];
  }[];
  readonly warnings: readonly string[];
  /** What the admin runs next. */
  readonly next: string | null;
}

/** Writes (or removes, or with dryRun lists) the boot layers. Throws on a broken configuration. */
export function install(host: Host, opts: InstallOptions): InstallReport {
  const root = host.root;
  const policy = host.trust;
  const report: InstallFile[] = [];
  const layout = layoutOf(root);
  if (opts.exec !== undefined && layout.packaged)
    throw new VfioctlError(
      `--exec: the packaged units run ${files.PACKAGED_EXEC} (${files.PACKAGED_MARKER} exists)`,
      EXIT.BAD_INPUT,
    );
  if (opts.libvirt) return installLibvirt(host, layout, opts);
  if (opts.uninstall) {
    const targets = [
      ...staticFiles(layout, '/x').map((f) => f.path),
      files.UDEV_RULES,
      ...root.list(BOOT_DIR).map((f) => `${BOOT_DIR}/${f}`),
    ];
    for (const p of targets) {
      let st: fs.Stats;
      try {
        st = fs.lstatSync(root.path(p));
      } catch {
        continue;
      }
      // Only what vfioctl wrote: an admin's file of the same name stays.
      const ours =
        st.isSymbolicLink() ||
        p.startsWith(`${BOOT_DIR}/`) ||
        (root.readFile(p) ?? '').includes(files.MARKER);
      if (!ours) {
        report.push({ path: p, action: 'kept (not written by vfioctl)' });
        continue;
      }
      if (opts.dryRun) {
        report.push({ path: p, action: 'would remove' });
        continue;
      }
      try {
        fs.rmSync(root.confineEntry(p), { force: true });
        report.push({ path: p, action: 'removed' });
      } catch (e) {
        report.push({ path: p, action: 'failed', error: errorText(e) });
      }
    }
    // Directories go only when empty: /usr/lib/vfioctl also holds the vendor hooks.d. The
    // package's directories are dpkg's.
    if (!opts.dryRun) {
      for (const d of layout.packaged
        ? [BOOT_DIR]
        : [BOOT_DIR, '/usr/lib/dracut/modules.d/90vfioctl', files.LIBEXEC]) {
        try {
          fs.rmdirSync(root.path(d));
        } catch {
          /* not empty (vendor hooks.d, an admin's file) or already gone: kept */
        }
      }
    }
    const next =
      "'update-initramfs -u -k all' (or 'dracut --regenerate-all') so the initramfs no longer carries the map, then 'udevadm control --reload' and 'systemctl daemon-reload'";
    return {
      uninstall: true,
      packaged: layout.packaged,
      dryRun: !!opts.dryRun,
      refresh: false,
      files: report,
      maps: [],
      warnings: [],
      next: opts.dryRun ? null : next,
    };
  }
  const kernels = opts.refresh && host.kernel ? [host.kernel] : installedKernels(root);
  if (kernels.length === 0)
    throw new VfioctlError(
      `no kernel module trees under ${root.path('/lib/modules')}: nothing to compute boot maps for`,
      EXIT.FAILED,
    );
  if (opts.refresh && !isInstalled(root))
    throw new VfioctlError(
      `the boot layers are not installed: run 'vfioctl install' first`,
      EXIT.BAD_INPUT,
    );
  // A broken configuration throws here: the previous maps stay as they are.
  const { maps, warnings } = computeMaps(root, policy, kernels, opts.config);
  const vfioctl = layout.packaged ? files.PACKAGED_EXEC : execPath(root, opts.exec, policy);
  // A map says which file it was made from (--config FILE, or the host's).
  const all = [
    ...(opts.refresh ? [] : staticFiles(layout, vfioctl)),
    ...mapFiles(root, maps, opts.config?.file ?? CONFIG_FILE),
  ];
  // Units a non-packaged install left in /etc override the package's: say so, keep the admin in
  // charge.
  if (layout.packaged) {
    for (const f of files.staticLayers(files.LOCAL_LAYOUT, '/x')) {
      if (f.path.startsWith('/etc/') && (root.readFile(f.path) ?? '').includes(files.MARKER))
        warnings.push(
          `${f.path} was written by a non-packaged 'vfioctl install' and hides the package's copy: remove it`,
        );
    }
  }
  for (const f of all) {
    const same =
      f.link !== undefined ? root.readLink(f.path) === f.link : root.readFile(f.path) === f.content;
    if (same || opts.dryRun) {
      report.push({ path: f.path, action: same ? 'unchanged' : 'would write' });
      continue;
    }
    // One file that cannot be written (a read-only /usr, EACCES) does not stop the others; the
    // report names it and the caller exits non-zero (`failed`).
    try {
      report.push({ path: f.path, action: writeFile(root, f) });
    } catch (e) {
      report.push({ path: f.path, action: 'failed', error: errorText(e) });
    }
  }
  const next =
    !opts.dryRun && !opts.refresh
      ? 'update-initramfs -u -k all (or dracut --regenerate-all), udevadm control --reload, systemctl daemon-reload'
      : null;
  return {
    uninstall: false,
    packaged: layout.packaged,
    dryRun: !!opts.dryRun,
    refresh: !!opts.refresh,
    files: report,
    maps: maps.map((m) => ({
      kernel: m.kernel,
      entries: m.entries.length,
      skipped: m.leftOut.map(describeLeftOut),
      leftOut: m.leftOut,
    })),
    warnings,
    next,
  };
}

const LIBVIRT_NEXT =
  "restart libvirt's daemon so it finds the hook ('systemctl restart libvirtd', or 'virtqemud' with the modular daemons; libvirt reads qemu.d/ from 6.5 on)";

/** `install --libvirt [--uninstall]`: the libvirt qemu hook only. */
function installLibvirt(host: Host, layout: files.Layout, opts: InstallOptions): InstallReport {
  const root = host.root;
  const p = files.LIBVIRT_HOOK;
  const base = {
    uninstall: !!opts.uninstall,
    packaged: layout.packaged,
    dryRun: !!opts.dryRun,
    refresh: false,
    maps: [],
    warnings: [],
  };
  if (opts.uninstall) {
    const text = root.readFile(p);
    // Only what vfioctl wrote; the package's copy is dpkg's (a conffile: 'apt-get purge' removes
    // it).
    const ours = text?.includes(files.MARKER) === true;
    const action: InstallFile['action'] =
      text === undefined
        ? 'absent'
        : !ours
          ? text.includes('Part of the vfioctl package')
            ? "kept (the package's)"
            : 'kept (not written by vfioctl)'
          : opts.dryRun
            ? 'would remove'
            : 'removed';
    if (ours && !opts.dryRun) fs.rmSync(root.confineEntry(p), { force: true });
    return {
      ...base,
      files: [{ path: p, action }],
      next: action === 'removed' ? LIBVIRT_NEXT : null,
    };
  }
  const f = files.libvirtHook(
    layout,
    layout.packaged ? files.PACKAGED_EXEC : execPath(root, opts.exec, host.trust),
  );
  const action =
    root.readFile(p) === f.content ? 'unchanged' : opts.dryRun ? 'would write' : writeFile(root, f);
  return { ...base, files: [{ path: p, action }], next: action === 'wrote' ? LIBVIRT_NEXT : null };
}
