// The list view: host readiness (doctor), configuration status, and the device table.
import { alert, card, h, label, replace, type LabelColor } from './dom';
import {
  UNBOUND,
  classLabel,
  deviceLabel,
  filterChoices,
  matches,
  sortDevices,
  sriovRole,
  type Filter,
  type SortKey,
  type Status,
} from './logic';
import { _, state } from './app';

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

const selectControl = (
  id: string,
  text: string,
  value: string,
  options: [string, string][],
  onChange: (v: string) => void,
): HTMLElement =>
  h(
    'div',
    null,
    h('label', { for: id }, text),
    h(
      'select',
      {
        id,
        class: 'pf-c-form-control',
        onchange: (e: Event) => onChange((e.target as HTMLSelectElement).value),
      },
      options.map(([v, t]) => h('option', { value: v, selected: v === value }, t)),
    ),
  );

function deviceTable(): HTMLElement {
  const devices = state.devices ?? [];
  const rows = sortDevices(
    devices.filter((d) => matches(d, state.filter)),
    state.sort,
  );
  const count = h(
    'p',
    { class: 'vf-muted', id: 'vf-count', 'aria-live': 'polite' },
    `${rows.length} of ${devices.length} devices`,
  );
  const head = h(
    'tr',
    { role: 'row' },
    COLUMNS.map((c) => {
      const active = state.sort.key === c.key;
      return h(
        'th',
        {
          role: 'columnheader',
          scope: 'col',
          class: `pf-c-table__sort pf-m-wrap${active ? ' pf-m-selected' : ''}`,
          'aria-sort': active ? (state.sort.dir === 'asc' ? 'ascending' : 'descending') : 'none',
        },
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
          h(
            'span',
            { 'aria-hidden': 'true' },
            active ? (state.sort.dir === 'asc' ? '▲' : '▼') : '↕',
          ),
        ),
      );
    }),
  );
  const body = rows.map((d) =>
    h(
      'tr',
      { role: 'row', 'data-address': d.address },
      h(
        'td',
        { role: 'cell', 'data-label': _('Address'), class: 'vf-nowrap' },
        h(
          'button',
          {
            type: 'button',
            class: 'vf-link vf-mono',
            onclick: () => cockpit.location.go(['device', d.address]),
            'aria-label': `${_('Details of')} ${d.address}`,
          },
          d.address,
        ),
      ),
      h('td', { role: 'cell', 'data-label': _('Device') }, deviceLabel(d)),
      h('td', { role: 'cell', 'data-label': _('Class') }, classLabel(d)),
      h(
        'td',
        { role: 'cell', 'data-label': _('Driver'), 'data-col': 'driver' },
        d.driver ?? h('span', { class: 'vf-muted' }, UNBOUND),
        ' ',
        d.onVfio ? label('VFIO', 'green') : null,
      ),
      h(
        'td',
        { role: 'cell', 'data-label': _('Best VFIO driver'), 'data-col': 'vfio' },
        d.vfio?.driver ??
          h(
            'span',
            { class: 'vf-muted', title: d.vfioReason ?? '' },
            d.vfioReason ? `none: ${d.vfioReason}` : 'none',
          ),
      ),
      h(
        'td',
        { role: 'cell', 'data-label': _('IOMMU group') },
        d.iommuGroup ?? '-',
        d.iommuGroupPeers.length
          ? h('span', { class: 'vf-muted' }, ` (+${d.iommuGroupPeers.length})`)
          : null,
      ),
      h('td', { role: 'cell', 'data-label': _('SR-IOV') }, sriovRole(d)),
      h(
        'td',
        { role: 'cell', 'data-label': _('In use'), 'data-col': 'inuse' },
        d.inUse.length
          ? h(
              'span',
              { class: 'vf-labels' },
              d.inUse.map((u) => label(u, 'orange')),
            )
          : '',
      ),
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
        {
          class: 'pf-c-table pf-m-compact pf-m-grid-md',
          role: 'grid',
          'aria-label': _('PCI devices'),
          id: 'vf-device-table',
        },
        h('thead', null, head),
        h(
          'tbody',
          { role: 'rowgroup' },
          rows.length
            ? body
            : h(
                'tr',
                null,
                h(
                  'td',
                  { colspan: COLUMNS.length },
                  devices.length ? _('No device matches the filter.') : _('No PCI devices.'),
                ),
              ),
        ),
      ),
    ),
  );
}

function updateTable(focusSort?: SortKey): void {
  const old = document.getElementById('vf-devices');
  if (!old) return;
  old.replaceWith(deviceTable());
  if (focusSort)
    (document.querySelector(`[data-sort="${focusSort}"]`) as HTMLElement | null)?.focus();
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
      h('input', {
        id: 'vf-filter-text',
        class: 'pf-c-form-control vf-search',
        type: 'search',
        placeholder: _('Address, name, driver, …'),
        value: state.filter.text,
        oninput: (e: Event) => set({ text: (e.target as HTMLInputElement).value }),
      }),
    ),
    selectControl(
      'vf-filter-class',
      _('Class'),
      state.filter.cls,
      [['', _('All classes')], ...classes.map((c): [string, string] => [c, c])],
      (v) => set({ cls: v }),
    ),
    selectControl(
      'vf-filter-driver',
      _('Driver'),
      state.filter.driver,
      [['', _('All drivers')], ...drivers.map((d): [string, string] => [d, d])],
      (v) => set({ driver: v }),
    ),
    h(
      'div',
      { class: 'pf-c-check' },
      h('input', {
        id: 'vf-filter-vfio',
        class: 'pf-c-check__input',
        type: 'checkbox',
        checked: state.filter.onVfio,
        onchange: (e: Event) => set({ onVfio: (e.target as HTMLInputElement).checked }),
      }),
      h('label', { class: 'pf-c-check__label', for: 'vf-filter-vfio' }, _('On VFIO only')),
    ),
  );
}

const STATUS_COLOR: Record<string, LabelColor> = { ok: 'green', warn: 'orange', fail: 'red' };

function doctorCard(): HTMLElement {
  const d = state.doctor;
  if (!d)
    return card(
      _('Host readiness'),
      'vf-doctor-title',
      h('p', { class: 'vf-muted' }, _('Not checked.')),
    );
  const problems = d.checks.filter((c) => c.status !== 'ok');
  const ok = d.checks.filter((c) => c.status === 'ok');
  return card(
    _('Host readiness'),
    'vf-doctor-title',
    h(
      'div',
      { class: 'vf-stack', id: 'vf-doctor' },
      d.ok
        ? alert('success', _('This host can use VFIO'))
        : alert('danger', _('This host cannot use VFIO yet: fix the FAIL lines')),
      h('p', { class: 'vf-muted' }, `${_('Kernel')} ${d.kernel ?? '?'}`),
      problems.length
        ? h(
            'ul',
            { class: 'pf-c-list pf-m-plain', 'aria-label': _('Problems') },
            problems.map((c) =>
              h(
                'li',
                { 'data-check': c.id, 'data-status': c.status },
                label(c.status.toUpperCase(), STATUS_COLOR[c.status]),
                ' ',
                h('strong', null, c.id),
                ': ',
                c.message,
              ),
            ),
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
              ok.map((c) =>
                h(
                  'li',
                  { 'data-check': c.id, 'data-status': c.status },
                  label('OK', 'green'),
                  ' ',
                  h('strong', null, c.id),
                  ': ',
                  c.message,
                ),
              ),
            ),
          )
        : null,
    ),
  );
}

export const DRIFT_COLOR: Record<string, LabelColor> = {
  ok: 'green',
  pending: 'blue',
  'boot-pending': 'blue',
  'kernel-changed': 'orange',
  rebound: 'orange',
  drift: 'orange',
  absent: 'grey',
  unconfigured: 'purple',
  unresolvable: 'red',
};

export function bootLabel(b: Status['devices'][number]['boot']): string {
  if (!b) return '-';
  const what =
    b.outcome === 'won'
      ? 'won'
      : b.outcome === 'host-first'
        ? `host driver first${b.hostDriverBuiltin ? ' (built in)' : ''}`
        : b.outcome;
  return b.driver ? `${what} (${b.driver})` : what;
}

function statusCard(): HTMLElement {
  const s = state.status;
  if (!s)
    return card(
      _('Configuration'),
      'vf-status-title',
      h('p', { class: 'vf-muted' }, _('Not read.')),
    );
  const c = card(
    _('Configuration'),
    'vf-status-title',
    h(
      'div',
      { class: 'vf-stack', id: 'vf-status' },
      h(
        'p',
        { class: 'vf-muted' },
        s.config
          ? `${_('Rules from')} ${s.config}`
          : _('No configuration file: nothing is persistent.'),
        s.bootAt
          ? ` · ${_('boot recorded')} ${new Date(typeof s.bootAt === 'number' ? s.bootAt : Date.parse(s.bootAt)).toLocaleString()}`
          : '',
      ),
      (s.warnings ?? []).map((w) => alert('warning', w)),
      s.devices.length
        ? h(
            'div',
            { class: 'vf-table-wrap' },
            h(
              'table',
              {
                class: 'pf-c-table pf-m-compact pf-m-grid-md',
                role: 'grid',
                'aria-label': _('Configured devices'),
              },
              h(
                'thead',
                null,
                h(
                  'tr',
                  { role: 'row' },
                  [
                    _('Device'),
                    _('Intent'),
                    _('Resolves to'),
                    _('Live driver'),
                    _('Boot'),
                    _('Drift'),
                  ].map((t) =>
                    h('th', { role: 'columnheader', scope: 'col', class: 'pf-m-wrap' }, t),
                  ),
                ),
              ),
              h(
                'tbody',
                { role: 'rowgroup' },
                s.devices.map((d) =>
                  h(
                    'tr',
                    { role: 'row', 'data-address': d.address, 'data-drift': d.drift },
                    h(
                      'td',
                      { role: 'cell', 'data-label': _('Device') },
                      h(
                        'button',
                        {
                          type: 'button',
                          class: 'vf-link vf-mono',
                          onclick: () => cockpit.location.go(['device', d.address]),
                        },
                        d.address,
                      ),
                    ),
                    h('td', { role: 'cell', 'data-label': _('Intent') }, d.intent ?? '-'),
                    h('td', { role: 'cell', 'data-label': _('Resolves to') }, d.resolved ?? '-'),
                    h(
                      'td',
                      { role: 'cell', 'data-label': _('Live driver') },
                      d.live?.driver ?? UNBOUND,
                    ),
                    h('td', { role: 'cell', 'data-label': _('Boot') }, bootLabel(d.boot)),
                    h(
                      'td',
                      { role: 'cell', 'data-label': _('Drift') },
                      label(d.drift, DRIFT_COLOR[d.drift] ?? 'grey'),
                      ' ',
                      h('span', { class: 'vf-muted' }, d.detail),
                    ),
                  ),
                ),
              ),
            ),
          )
        : h('p', null, _('No device is configured.')),
    ),
  );
  // A table of configured devices needs the whole width to stay readable.
  if (s.devices.length) c.classList.add('vf-wide');
  return c;
}

function loadErrorAlerts(): HTMLElement[] {
  return state.loadErrors.map((e) => alert('danger', _('vfioctl could not be read'), e));
}

export function renderList(content: HTMLElement): void {
  const focused = document.activeElement?.id;
  replace(
    content,
    loadErrorAlerts(),
    h('div', { class: 'vf-cards' }, doctorCard(), statusCard()),
    state.devices
      ? card(_('PCI devices'), 'vf-devices-title', filterToolbar(), deviceTable())
      : state.loadErrors.length
        ? h('p', null, _('No device list.'))
        : null,
  );
  if (focused) document.getElementById(focused)?.focus();
}
