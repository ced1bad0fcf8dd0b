// vfioctl's Cockpit page: the device table, a device's detail, bind/unbind/set/unset with a
// --dry-run preview first, host readiness (doctor) and configuration status. Everything it knows
// comes from `vfioctl ... --json` (cli.ts).
import { pageConfig, hostPath, runVfioctl, type PageConfig } from './cli';
import { alert, button, card, h, label, replace, uid, type LabelColor } from './dom';
import {
  ACTION_LABELS,
  NO_FILTER,
  UNBOUND,
  actionArgs,
  availableActions,
  classLabel,
  deviceLabel,
  exitMeaning,
  filterChoices,
  judgePreview,
  matches,
  sortDevices,
  sriovRole,
  stderrLines,
  type ActionOutput,
  type ActionRequest,
  type Device,
  type Doctor,
  type Filter,
  type Result,
  type ShownDevice,
  type Sort,
  type SortKey,
  type Status,
} from './logic';

const _ = (s: string): string => cockpit.gettext(s);

interface State {
  devices: Device[] | null;
  status: Status | null;
  doctor: Doctor | null;
  loadErrors: string[];
  filter: Filter;
  sort: Sort;
}

const state: State = { devices: null, status: null, doctor: null, loadErrors: [], filter: { ...NO_FILTER }, sort: { key: 'address', dir: 'asc' } };
let cfg: PageConfig;
let content: HTMLElement;
let progress: HTMLElement;
const running = new Set<string>();

// ---- progress: every vfioctl run shows in one live region ----

function showProgress(): void {
  progress.hidden = running.size === 0;
  replace(progress, running.size ? [h('span', { class: 'pf-c-spinner pf-m-md', role: 'progressbar', 'aria-valuetext': _('Working') }, h('span', { class: 'pf-c-spinner__clipper' }), h('span', { class: 'pf-c-spinner__lead-ball' }), h('span', { class: 'pf-c-spinner__tail-ball' })), h('span', null, [...running].join('; '))] : []);
}

/** body[data-busy] is "true" while an operation (its vfioctl runs and the drawing after) is under way; tests wait on it. */
let operations = 0;
async function operation<T>(fn: () => Promise<T>): Promise<T> {
  operations++;
  document.body.setAttribute('data-busy', 'true');
  try {
    return await fn();
  } finally {
    if (--operations === 0) document.body.setAttribute('data-busy', 'false');
  }
}

async function tracked<T>(what: string, args: string[]): Promise<{ code: number; data: T | null; stderr: string }> {
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
function reload(): Promise<void> {
  if (loading) {
    reloadAgain = true;
    return loading;
  }
  loading = operation(async () => {
    do {
      reloadAgain = false;
      const [list, status, doctor] = await Promise.all([
        tracked<Device[]>(_('Reading devices'), ['list', '--json']).catch((e: Error) => ({ code: -1, data: null, stderr: e.message })),
        tracked<Status>(_('Reading configuration status'), ['status', '--json']).catch((e: Error) => ({ code: -1, data: null, stderr: e.message })),
        tracked<Doctor>(_('Checking the host'), ['doctor', '--json']).catch((e: Error) => ({ code: -1, data: null, stderr: e.message })),
      ]);
      const errors: string[] = [];
      const take = <T>(what: string, r: { code: number; data: T | null; stderr: string }): T | null => {
        if (r.data !== null) return r.data;
        errors.push(`${what}: ${stderrLines(r.stderr).join(' ') || exitMeaning(r.code)}`);
        return null;
      };
      state.devices = take('vfioctl list', list);
      state.status = take('vfioctl status', status);
      state.doctor = take('vfioctl doctor', doctor);
      state.loadErrors = errors;
      render();
    } while (reloadAgain);
    loading = null;
  });
  return loading;
}

/** state.json (what apply did) and boot.json (this boot's outcome) change under us: refresh. */
function watchState(): void {
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

// ---- the list view ----

const COLUMNS: { key: SortKey; title: string }[] = [
  { key: 'address', title: 'Address' },
  { key: 'name', title: 'Device' },
  { key: 'class', title: 'Class' },
  { key: 'driver', title: 'Driver' },
  { key: 'vfio', title: 'Best VFIO driver' },
  { key: 'group', title: 'IOMMU group' },
  { key: 'sriov', title: 'SR-IOV' },
  { key: 'inUse', title: 'In use' },
];

const selectControl = (id: string, text: string, value: string, options: [string, string][], onChange: (v: string) => void): HTMLElement =>
  h(
    'div',
    null,
    h('label', { for: id }, text),
    h(
      'select',
      { id, class: 'pf-c-form-control', onchange: (e: Event) => onChange((e.target as HTMLSelectElement).value) },
      options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)),
    ),
  );

function deviceTable(): HTMLElement {
  const devices = state.devices ?? [];
  const rows = sortDevices(devices.filter((d) => matches(d, state.filter)), state.sort);
  const count = h('p', { class: 'vf-muted', id: 'vf-count', 'aria-live': 'polite' }, `${rows.length} of ${devices.length} devices`);
  const head = h(
    'tr',
    { role: 'row' },
    COLUMNS.map((c) => {
      const active = state.sort.key === c.key;
      return h(
        'th',
        { role: 'columnheader', scope: 'col', class: `pf-c-table__sort pf-m-wrap${active ? ' pf-m-selected' : ''}`, 'aria-sort': active ? (state.sort.dir === 'asc' ? 'ascending' : 'descending') : 'none' },
        h(
          'button',
          {
            type: 'button',
            class: 'vf-sort',
            'data-sort': c.key,
            onclick: () => {
              state.sort = { key: c.key, dir: active && state.sort.dir === 'asc' ? 'desc' : 'asc' };
              updateTable(c.key);
            },
          },
          _(c.title),
          h('span', { 'aria-hidden': 'true' }, active ? (state.sort.dir === 'asc' ? '▲' : '▼') : '↕'),
        ),
      );
    }),
  );
  const body = rows.map((d) =>
    h(
      'tr',
      { role: 'row', 'data-address': d.address },
      h('td', { role: 'cell', 'data-label': _('Address'), class: 'vf-nowrap' }, h('button', { type: 'button', class: 'vf-link vf-mono', onclick: () => cockpit.location.go(['device', d.address]), 'aria-label': `${_('Details of')} ${d.address}` }, d.address)),
      h('td', { role: 'cell', 'data-label': _('Device') }, deviceLabel(d)),
      h('td', { role: 'cell', 'data-label': _('Class') }, classLabel(d)),
      h('td', { role: 'cell', 'data-label': _('Driver'), 'data-col': 'driver' }, d.driver ?? h('span', { class: 'vf-muted' }, UNBOUND), ' ', d.onVfio ? label('VFIO', 'green') : null),
      h('td', { role: 'cell', 'data-label': _('Best VFIO driver'), 'data-col': 'vfio' }, d.vfio?.driver ?? h('span', { class: 'vf-muted', title: d.vfioReason ?? '' }, d.vfioReason ? `none: ${d.vfioReason}` : 'none')),
      h('td', { role: 'cell', 'data-label': _('IOMMU group') }, d.iommuGroup ?? '-', d.iommuGroupPeers.length ? h('span', { class: 'vf-muted' }, ` (+${d.iommuGroupPeers.length})`) : null),
      h('td', { role: 'cell', 'data-label': _('SR-IOV') }, sriovRole(d)),
      h('td', { role: 'cell', 'data-label': _('In use'), 'data-col': 'inuse' }, d.inUse.length ? h('span', { class: 'vf-labels' }, d.inUse.map((u) => label(u, 'orange'))) : ''),
    ),
  );
  return h(
    'div',
    { id: 'vf-devices' },
    count,
    h(
      'div',
      { class: 'vf-table-wrap' },
      h(
        'table',
        { class: 'pf-c-table pf-m-compact pf-m-grid-md', role: 'grid', 'aria-label': _('PCI devices'), id: 'vf-device-table' },
        h('thead', null, head),
        h('tbody', { role: 'rowgroup' }, rows.length ? body : h('tr', null, h('td', { colspan: COLUMNS.length }, devices.length ? _('No device matches the filter.') : _('No PCI devices.')))),
      ),
    ),
  );
}

function updateTable(focusSort?: SortKey): void {
  const old = document.getElementById('vf-devices');
  if (!old) return;
  old.replaceWith(deviceTable());
  if (focusSort) (document.querySelector(`[data-sort="${focusSort}"]`) as HTMLElement | null)?.focus();
}

function filterToolbar(): HTMLElement {
  const { classes, drivers } = filterChoices(state.devices ?? []);
  const set = (patch: Partial<Filter>) => {
    state.filter = { ...state.filter, ...patch };
    updateTable();
  };
  return h(
    'div',
    { class: 'vf-filters', role: 'search', 'aria-label': _('Filter devices') },
    h(
      'div',
      null,
      h('label', { for: 'vf-filter-text' }, _('Filter')),
      h('input', { id: 'vf-filter-text', class: 'pf-c-form-control vf-search', type: 'search', placeholder: _('Address, name, driver, …'), value: state.filter.text, oninput: (e: Event) => set({ text: (e.target as HTMLInputElement).value }) }),
    ),
    selectControl('vf-filter-class', _('Class'), state.filter.cls, [['', _('All classes')], ...classes.map((c): [string, string] => [c, c])], (v) => set({ cls: v })),
    selectControl('vf-filter-driver', _('Driver'), state.filter.driver, [['', _('All drivers')], ...drivers.map((d): [string, string] => [d, d])], (v) => set({ driver: v })),
    h(
      'div',
      { class: 'pf-c-check' },
      h('input', { id: 'vf-filter-vfio', class: 'pf-c-check__input', type: 'checkbox', checked: state.filter.onVfio, onchange: (e: Event) => set({ onVfio: (e.target as HTMLInputElement).checked }) }),
      h('label', { class: 'pf-c-check__label', for: 'vf-filter-vfio' }, _('On VFIO only')),
    ),
  );
}

const STATUS_COLOR: Record<string, LabelColor> = { ok: 'green', warn: 'orange', fail: 'red' };

function doctorCard(): HTMLElement {
  const d = state.doctor;
  if (!d) return card(_('Host readiness'), 'vf-doctor-title', h('p', { class: 'vf-muted' }, _('Not checked.')));
  const problems = d.checks.filter((c) => c.status !== 'ok');
  const ok = d.checks.filter((c) => c.status === 'ok');
  return card(
    _('Host readiness'),
    'vf-doctor-title',
    h(
      'div',
      { class: 'vf-stack', id: 'vf-doctor' },
      d.ok ? alert('success', _('This host can use VFIO')) : alert('danger', _('This host cannot use VFIO yet: fix the FAIL lines')),
      h('p', { class: 'vf-muted' }, `${_('Kernel')} ${d.kernel ?? '?'}`),
      problems.length
        ? h(
            'ul',
            { class: 'pf-c-list pf-m-plain', 'aria-label': _('Problems') },
            problems.map((c) => h('li', { 'data-check': c.id, 'data-status': c.status }, label(c.status.toUpperCase(), STATUS_COLOR[c.status]), ' ', h('strong', null, c.id), ': ', c.message)),
          )
        : null,
      ok.length
        ? h(
            'details',
            null,
            h('summary', null, `${ok.length} ${_('checks passed')}`),
            h(
              'ul',
              { class: 'pf-c-list pf-m-plain' },
              ok.map((c) => h('li', { 'data-check': c.id, 'data-status': c.status }, label('OK', 'green'), ' ', h('strong', null, c.id), ': ', c.message)),
            ),
          )
        : null,
    ),
  );
}

const DRIFT_COLOR: Record<string, LabelColor> = { ok: 'green', pending: 'blue', 'boot-pending': 'blue', 'kernel-changed': 'orange', rebound: 'orange', drift: 'orange', absent: 'grey', unconfigured: 'purple', unresolvable: 'red' };

function bootLabel(b: Status['devices'][number]['boot']): string {
  if (!b) return '-';
  const what = b.outcome === 'won' ? 'won' : b.outcome === 'host-first' ? `host driver first${b.hostDriverBuiltin ? ' (built in)' : ''}` : b.outcome;
  return b.driver ? `${what} (${b.driver})` : what;
}

function statusCard(): HTMLElement {
  const s = state.status;
  if (!s) return card(_('Configuration'), 'vf-status-title', h('p', { class: 'vf-muted' }, _('Not read.')));
  return card(
    _('Configuration'),
    'vf-status-title',
    h(
      'div',
      { class: 'vf-stack', id: 'vf-status' },
      h('p', { class: 'vf-muted' }, s.config ? `${_('Rules from')} ${s.config}` : _('No configuration file: nothing is persistent.'), s.bootAt ? ` · ${_('boot recorded')} ${new Date(typeof s.bootAt === 'number' ? s.bootAt : Date.parse(s.bootAt)).toLocaleString()}` : ''),
      (s.warnings ?? []).map((w) => alert('warning', w)),
      s.devices.length
        ? h(
            'div',
            { class: 'vf-table-wrap' },
            h(
              'table',
              { class: 'pf-c-table pf-m-compact pf-m-grid-md', role: 'grid', 'aria-label': _('Configured devices') },
              h('thead', null, h('tr', { role: 'row' }, [_('Device'), _('Intent'), _('Resolves to'), _('Live driver'), _('Boot'), _('Drift')].map((t) => h('th', { role: 'columnheader', scope: 'col', class: 'pf-m-wrap' }, t)))),
              h(
                'tbody',
                { role: 'rowgroup' },
                s.devices.map((d) =>
                  h(
                    'tr',
                    { role: 'row', 'data-address': d.address, 'data-drift': d.drift },
                    h('td', { role: 'cell', 'data-label': _('Device') }, h('button', { type: 'button', class: 'vf-link vf-mono', onclick: () => cockpit.location.go(['device', d.address]) }, d.address)),
                    h('td', { role: 'cell', 'data-label': _('Intent') }, d.intent ?? '-'),
                    h('td', { role: 'cell', 'data-label': _('Resolves to') }, d.resolved ?? '-'),
                    h('td', { role: 'cell', 'data-label': _('Live driver') }, d.live?.driver ?? UNBOUND),
                    h('td', { role: 'cell', 'data-label': _('Boot') }, bootLabel(d.boot)),
                    h('td', { role: 'cell', 'data-label': _('Drift') }, label(d.drift, DRIFT_COLOR[d.drift] ?? 'grey'), ' ', h('span', { class: 'vf-muted' }, d.detail)),
                  ),
                ),
              ),
            ),
          )
        : h('p', null, _('No device is configured.')),
    ),
  );
}

function loadErrorAlerts(): HTMLElement[] {
  return state.loadErrors.map((e) => alert('danger', _('vfioctl could not be read'), e));
}

function renderList(): void {
  const focused = document.activeElement?.id;
  replace(
    content,
    loadErrorAlerts(),
    h('div', { class: 'vf-cards' }, doctorCard(), statusCard()),
    state.devices ? card(_('PCI devices'), 'vf-devices-title', filterToolbar(), deviceTable()) : running.size ? null : h('p', null, _('No device list.')),
  );
  if (focused) document.getElementById(focused)?.focus();
}

// ---- the detail view ----

function renderDetail(address: string): Promise<void> {
  return operation(() => drawDetail(address));
}

async function drawDetail(address: string): Promise<void> {
  const back = h(
    'nav',
    { class: 'pf-c-breadcrumb', 'aria-label': _('Breadcrumb') },
    h('ol', { class: 'pf-c-breadcrumb__list' }, h('li', { class: 'pf-c-breadcrumb__item' }, h('a', { class: 'pf-c-breadcrumb__link', href: '#/', id: 'vf-back', onclick: (e: Event) => (e.preventDefault(), cockpit.location.go([])) }, _('VFIO devices'))), h('li', { class: 'pf-c-breadcrumb__item' }, h('span', { class: 'pf-c-breadcrumb__item-divider', 'aria-hidden': 'true' }, '›'), h('span', { 'aria-current': 'page', class: 'vf-mono' }, address))),
  );
  const body = h('div', { class: 'vf-stack', id: 'vf-detail' });
  replace(content, back, h('h2', { class: 'pf-c-title pf-m-xl', id: 'vf-detail-title', tabindex: '-1' }, `${_('Device')} ${address}`), body);
  (document.getElementById('vf-detail-title') as HTMLElement).focus();
  const r = await tracked<ShownDevice>(_('Reading the device'), ['show', address, '--json']).catch((e: Error) => ({ code: -1, data: null, stderr: e.message }));
  if (cockpit.location.path[1] !== address) return; // navigated away meanwhile
  if (!r.data) {
    replace(body, alert('danger', _('vfioctl cannot show this device'), stderrLines(r.stderr).join(' ') || exitMeaning(r.code)));
    return;
  }
  const d = r.data;
  const rule = state.status?.devices.find((s) => s.address === address);
  const byAddress = new Map((state.devices ?? []).map((x) => [x.address, x]));
  const dl = (rows: [string, Node | string][]) =>
    h(
      'dl',
      { class: 'pf-c-description-list pf-m-horizontal pf-m-compact' },
      rows.map(([k, v]) => h('div', { class: 'pf-c-description-list__group' }, h('dt', { class: 'pf-c-description-list__term' }, h('span', { class: 'pf-c-description-list__text' }, k)), h('dd', { class: 'pf-c-description-list__description' }, h('div', { class: 'pf-c-description-list__text' }, v)))),
    );
  const actions = h(
    'div',
    { class: 'vf-actions', role: 'group', 'aria-label': _('Actions') },
    availableActions(d, rule).map((k) => button(_(ACTION_LABELS[k].button), k === 'bind' ? 'primary' : 'secondary', () => void actionDialog({ kind: k, address }), { 'data-action': k })),
  );
  const members = [d.address, ...d.iommuGroupPeers];
  replace(
    body,
    actions,
    h(
      'div',
      { class: 'vf-cards' },
      card(
        _('Device'),
        'vf-dev-title',
        dl([
          [_('Name'), deviceLabel(d)],
          [_('IDs'), `${d.vendor}:${d.device}`],
          [_('Class'), `${classLabel(d)} (${d.class})`],
          [_('Driver'), d.driver ?? UNBOUND],
          [_('driver_override'), d.driverOverride ?? '-'],
          [_('Best VFIO driver'), d.vfio ? `${d.vfio.driver} (${d.vfio.module})` : `none${d.vfioReason ? `: ${d.vfioReason}` : ''}`],
          [_('SR-IOV'), sriovRole(d) || '-'],
          [_('In use'), d.inUse.length ? h('ul', { class: 'pf-c-list' }, d.inUse.map((u) => h('li', { class: 'vf-inuse' }, u))) : _('no')],
          [_('Interfaces and disks'), [...d.netdevs, ...d.blockdevs].join(', ') || '-'],
        ]),
      ),
      card(
        rule ? _('Configured rule') : _('Configuration'),
        'vf-rule-title',
        rule
          ? h('div', { id: 'vf-rule' }, dl([[_('Rule'), rule.rule ?? '-'], [_('Intent'), rule.intent ?? '-'], [_('Resolves to'), rule.resolved ?? rule.reason ?? '-'], [_('Drift'), h('span', null, label(rule.drift, DRIFT_COLOR[rule.drift] ?? 'grey'), ' ', rule.detail)], [_('Boot'), bootLabel(rule.boot)]]))
          : h('p', { id: 'vf-rule' }, _('No rule names this device.')),
      ),
    ),
    card(
      _('VFIO candidates'),
      'vf-cand-title',
      d.candidates.length
        ? h(
            'div',
            { class: 'vf-table-wrap' },
            h(
              'table',
              { class: 'pf-c-table pf-m-compact pf-m-grid-md', role: 'grid', 'aria-label': _('VFIO candidates, best first'), id: 'vf-candidates' },
              h('thead', null, h('tr', { role: 'row' }, [_('Driver'), _('Module'), _('Usable'), _('Why'), _('Alias'), _('Source')].map((t) => h('th', { role: 'columnheader', scope: 'col', class: 'pf-m-wrap' }, t)))),
              h(
                'tbody',
                { role: 'rowgroup' },
                d.candidates.map((c) =>
                  h(
                    'tr',
                    { role: 'row', 'data-driver': c.driver },
                    h('td', { role: 'cell', 'data-label': _('Driver') }, c.driver),
                    h('td', { role: 'cell', 'data-label': _('Module') }, c.module),
                    h('td', { role: 'cell', 'data-label': _('Usable'), 'data-col': 'usable' }, c.usable ? label(_('usable'), 'green') : label(_('not usable'), 'red')),
                    h('td', { role: 'cell', 'data-label': _('Why'), 'data-col': 'why' }, [c.reason, ...c.notes].filter(Boolean).join('; ') || '-'),
                    h('td', { role: 'cell', 'data-label': _('Alias') }, h('span', { class: 'vf-mono' }, c.alias)),
                    h('td', { role: 'cell', 'data-label': _('Source') }, c.source),
                  ),
                ),
              ),
            ),
          )
        : h('p', null, d.vfioReason ?? _('No VFIO driver matches this device.')),
    ),
    h(
      'div',
      { class: 'vf-cards' },
      card(
        d.iommuGroup ? `${_('IOMMU group')} ${d.iommuGroup}` : _('IOMMU group'),
        'vf-group-title',
        d.iommuGroup
          ? h(
              'ul',
              { class: 'pf-c-list', id: 'vf-group' },
              members.map((m) => h('li', { 'data-address': m }, h('span', { class: 'vf-mono' }, m), ` — ${byAddress.get(m)?.driver ?? UNBOUND}`, m === d.address ? ` (${_('this device')})` : '')),
            )
          : h('p', null, _('No IOMMU group: VFIO cannot use this device.')),
      ),
      card(
        _('Hooks'),
        'vf-hooks-title',
        d.hooks?.length
          ? h(
              'ul',
              { class: 'pf-c-list', id: 'vf-hooks' },
              d.hooks.map((k) => h('li', null, h('span', { class: 'vf-mono' }, k.path), ` (${k.source})`, k.problem ? h('span', { class: 'vf-inuse' }, ` ${_('will not run')}: ${k.problem}`) : null)),
            )
          : h('p', { id: 'vf-hooks' }, _('No hooks run for this device.')),
      ),
    ),
  );
}

// ---- actions: a --dry-run preview, then a confirmation; force behind a second one ----

function resultBlock(r: Result, dryRun: boolean): HTMLElement {
  const head = `${r.address}: ${r.status}${r.target ? ` → ${r.target}` : ''}${r.driver ? ` (${_('now')} ${r.driver})` : ''}`;
  return h(
    'div',
    { class: 'vf-stack', 'data-result': r.address, 'data-status': r.status },
    h('h3', { class: 'pf-c-title pf-m-md' }, head, r.phase ? h('span', { class: 'vf-muted' }, ` · ${r.phase}${r.rule ? `, ${r.rule}` : ''}`) : null),
    r.steps.length
      ? h(
          'ol',
          { class: 'vf-steps', 'aria-label': dryRun ? _('Steps that would be taken') : _('Steps taken') },
          r.steps.map((s) => h('li', null, s.description, !dryRun ? (s.done ? ' ✓' : ' —') : null, s.error ? h('span', { class: 'vf-inuse' }, ` ${s.error}`) : null)),
        )
      : null,
    r.refusals.map((x) =>
      h(
        'div',
        { 'data-refusal': x.check },
        alert('danger', `${_('Refused')}: ${x.check}`, h('p', null, x.message), h('p', { class: 'vf-muted' }, x.forceable && x.check !== 'vfio-user' ? _('A forced bind may override this.') : _('This cannot be overridden.'))),
      ),
    ),
    r.warnings.map((w) => alert('warning', w)),
    r.error && r.refusals.length === 0 ? alert('danger', r.error) : null,
  );
}

function outputBlock(out: ActionOutput | null, code: number, stderr: string, dryRun: boolean): HTMLElement {
  const lines = stderrLines(stderr);
  if (!out) return alert('danger', `vfioctl: ${exitMeaning(code)}`, lines.map((l) => h('p', null, l)));
  return h(
    'div',
    { class: 'vf-stack' },
    out.results.map((r) => resultBlock(r, dryRun)),
    (out.skipped ?? []).map((s) => alert('info', `${s.address} ${_('skipped')}`, s.reason)),
    (out.warnings ?? []).map((w) => alert('warning', w)),
    lines.length ? alert('info', _('vfioctl says'), lines.map((l) => h('p', null, l))) : null,
    out.results.length === 0 ? h('p', null, _('Nothing to do.')) : null,
  );
}

let dialogOpen = false;

async function actionDialog(first: ActionRequest): Promise<void> {
  if (dialogOpen) return;
  dialogOpen = true;
  const opener = document.activeElement as HTMLElement | null;
  const titleId = uid('vf-dlg-title');
  const title = h('h1', { class: 'pf-c-modal-box__title vf-wrap', id: titleId });
  const body = h('div', { class: 'pf-c-modal-box__body', 'aria-live': 'polite' });
  const footer = h('footer', { class: 'pf-c-modal-box__footer vf-actions' });
  const box = h('div', { class: 'pf-c-modal-box pf-m-md vf-modal', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': titleId, id: 'vf-dialog' }, h('header', { class: 'pf-c-modal-box__header' }, title), body, footer);
  const backdrop = h('div', { class: 'pf-c-backdrop' }, h('div', { class: 'pf-l-bullseye' }, box));
  let busy = false;
  const close = () => {
    if (busy) return;
    backdrop.remove();
    dialogOpen = false;
    opener?.focus();
  };
  backdrop.addEventListener('keydown', (e: KeyboardEvent) => {
    if (e.key === 'Escape') close();
    if (e.key === 'Tab') {
      // Keep keyboard focus inside the dialog.
      const f = [...box.querySelectorAll<HTMLElement>('button:not([disabled]), input:not([disabled]), a[href]')];
      if (f.length === 0) return;
      const i = f.indexOf(document.activeElement as HTMLElement);
      if (e.shiftKey && i <= 0) (e.preventDefault(), f[f.length - 1]!.focus());
      else if (!e.shiftKey && i === f.length - 1) (e.preventDefault(), f[0]!.focus());
    }
  });
  document.body.appendChild(backdrop);
  const cancel = () => button(_('Cancel'), 'link', close, { 'data-dialog': 'cancel' });

  const run = (req: ActionRequest, dryRun: boolean) => operation(() => step(req, dryRun));
  const step = async (req: ActionRequest, dryRun: boolean) => {
    const labels = ACTION_LABELS[req.kind];
    replace(title, dryRun ? `${_('Preview')}: ${_(labels.title)}${req.group ? ` (${_('whole IOMMU group')})` : ''}${req.force ? ` (${_('forced')})` : ''}` : `${_(labels.title)}: ${_('result')}`);
    replace(body, h('p', null, dryRun ? _('Checking what would happen (dry run, nothing is changed)…') : _('Working…')));
    replace(footer);
    busy = true;
    box.setAttribute('aria-busy', 'true');
    const r = await tracked<ActionOutput>(dryRun ? _('Preview') : _(labels.run), actionArgs(req, dryRun)).catch((e: Error) => ({ code: -1, data: null, stderr: e.message }));
    busy = false;
    box.setAttribute('aria-busy', 'false');
    replace(body, h('p', { class: 'vf-muted' }, `vfioctl ${actionArgs(req, dryRun).join(' ')}: ${exitMeaning(r.code)}`), outputBlock(r.data, r.code, r.stderr, dryRun));
    if (!dryRun) {
      replace(footer, button(_('Close'), 'primary', close, { 'data-dialog': 'close' }));
      (footer.firstElementChild as HTMLElement).focus();
      await reload();
      if (cockpit.location.path[0] === 'device') await renderDetail(cockpit.location.path[1]!);
      return;
    }
    const v = r.data ? judgePreview(req, r.data) : null;
    const buttons: HTMLElement[] = [];
    if (v?.canRun && !req.force) buttons.push(button(_(labels.run), 'primary', () => void run(req, false), { 'data-dialog': 'confirm' }));
    if (v?.canRun && req.force) {
      // The second confirmation: the refusals being overridden, acknowledged explicitly.
      const checks = [...new Set(v.refusals.map((x) => x.check))];
      const go = button(`${_('Force')} ${_(labels.run).toLowerCase()}`, 'danger', () => void run(req, false), { 'data-dialog': 'force-confirm', disabled: true });
      const ackId = uid('vf-ack');
      buttons.push(
        h(
          'div',
          { class: 'pf-c-check' },
          h('input', { id: ackId, class: 'pf-c-check__input', type: 'checkbox', 'data-dialog': 'force-ack', onchange: (e: Event) => (go.disabled = !(e.target as HTMLInputElement).checked) }),
          h('label', { class: 'pf-c-check__label', for: ackId }, `${_('I understand that this overrides')}: ${checks.join(', ') || _('no check')}`),
        ),
        go,
      );
    }
    if (v?.offerGroup) buttons.push(button(_('Preview moving the whole IOMMU group'), 'secondary', () => void run({ ...req, group: true }, true), { 'data-dialog': 'group' }));
    if (v?.offerForce) buttons.push(button(_('Preview a forced bind…'), 'secondary', () => void run({ ...req, force: true }, true), { 'data-dialog': 'force' }));
    if (v?.noop) body.appendChild(alert('info', _('Already there: nothing would change.')));
    buttons.push(cancel());
    replace(footer, buttons);
    (footer.querySelector('button:not([disabled])') as HTMLElement | null)?.focus();
  };
  await run(first, true);
}

// ---- routing ----

function render(): void {
  const p = cockpit.location.path;
  if (p[0] === 'device' && p[1]) {
    // The detail re-reads its device; a refresh while the dialog is open must not reset it.
    if (!dialogOpen) void renderDetail(p[1]);
  } else renderList();
}

function init(): void {
  cfg = pageConfig();
  const app = document.getElementById('app')!;
  progress = h('div', { class: 'vf-progress', role: 'status', 'aria-live': 'polite', id: 'vf-progress', hidden: true });
  content = h('div', { class: 'vf-main', id: 'vf-content' });
  replace(
    app,
    h(
      'main',
      { class: 'pf-c-page__main', id: 'vf-main' },
      h('section', { class: 'pf-c-page__main-section pf-m-light' }, h('h1', { class: 'pf-c-title pf-m-2xl' }, _('VFIO devices')), progress),
      h('section', { class: 'pf-c-page__main-section' }, content),
    ),
  );
  cockpit.addEventListener('locationchanged', render);
  watchState();
  void reload();
}

document.addEventListener('DOMContentLoaded', init);
