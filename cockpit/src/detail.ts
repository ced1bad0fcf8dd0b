// A device's detail: what `show --json` says of it, its IOMMU group, hooks and rule, and its
// actions.
import { alert, button, card, h, label, replace } from './dom';
import {
  ACTION_LABELS,
  UNBOUND,
  availableActions,
  classLabel,
  deviceLabel,
  exitMeaning,
  sriovRole,
  stderrLines,
  type ShownDevice,
} from './logic';
import { _, operation, state, tracked } from './app';
import { DRIFT_COLOR, bootLabel } from './list';
import { actionDialog } from './dialog';

export function renderDetail(content: HTMLElement, address: string): Promise<void> {
  return operation(() => drawDetail(content, address));
}

async function drawDetail(content: HTMLElement, address: string): Promise<void> {
  const back = h(
    'nav',
    { class: 'pf-c-breadcrumb', 'aria-label': _('Breadcrumb') },
    h(
      'ol',
      { class: 'pf-c-breadcrumb__list' },
      h(
        'li',
        { class: 'pf-c-breadcrumb__item' },
        h(
          'a',
          {
            class: 'pf-c-breadcrumb__link',
            href: '#/',
            id: 'vf-back',
            onclick: (e: Event) => (e.preventDefault(), cockpit.location.go([])),
          },
          _('VFIO devices'),
        ),
      ),
      h(
        'li',
        { class: 'pf-c-breadcrumb__item' },
        h('span', { class: 'pf-c-breadcrumb__item-divider', 'aria-hidden': 'true' }, '›'),
        h('span', { 'aria-current': 'page', class: 'vf-mono' }, address),
      ),
    ),
  );
  const body = h('div', { class: 'vf-stack', id: 'vf-detail' });
  replace(
    content,
    back,
    h(
      'h2',
      { class: 'pf-c-title pf-m-xl', id: 'vf-detail-title', tabindex: '-1' },
      `${_('Device')} ${address}`,
    ),
    body,
  );
  // Focus follows navigation, but never leaves an open dialog (the detail redraws under it after a
  // run).
  if (!state.dialogOpen) (document.getElementById('vf-detail-title') as HTMLElement).focus();
  const r = await tracked<ShownDevice>(_('Reading the device'), ['show', address, '--json']).catch(
    (e: Error) => ({ code: -1, data: null, stderr: e.message }),
  );
  if (cockpit.location.path[1] !== address) return; // navigated away meanwhile
  if (!r.data) {
    replace(
      body,
      alert(
        'danger',
        _('vfioctl cannot show this device'),
        stderrLines(r.stderr).join(' ') || exitMeaning(r.code),
      ),
    );
    return;
  }
  const d = r.data;
  const rule = state.status?.devices.find((s) => s.address === address);
  const byAddress = new Map((state.devices ?? []).map((x) => [x.address, x]));
  const dl = (rows: [string, Node | string][]) =>
    h(
      'dl',
      { class: 'pf-c-description-list pf-m-horizontal pf-m-compact' },
      rows.map(([k, v]) =>
        h(
          'div',
          { class: 'pf-c-description-list__group' },
          h(
            'dt',
            { class: 'pf-c-description-list__term' },
            h('span', { class: 'pf-c-description-list__text' }, k),
          ),
          h(
            'dd',
            { class: 'pf-c-description-list__description' },
            h('div', { class: 'pf-c-description-list__text' }, v),
          ),
        ),
      ),
    );
  const actions = h(
    'div',
    { class: 'vf-actions', role: 'group', 'aria-label': _('Actions') },
    availableActions(d, rule).map((k) =>
      button(
        _(ACTION_LABELS[k].button),
        k === 'bind' ? 'primary' : 'secondary',
        () => void actionDialog({ kind: k, address }, () => renderDetail(content, address)),
        { 'data-action': k },
      ),
    ),
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
          [
            _('Best VFIO driver'),
            d.vfio
              ? `${d.vfio.driver} (${d.vfio.module})`
              : `none${d.vfioReason ? `: ${d.vfioReason}` : ''}`,
          ],
          [_('SR-IOV'), sriovRole(d) || '-'],
          [
            _('In use'),
            d.inUse.length
              ? h(
                  'ul',
                  { class: 'pf-c-list' },
                  d.inUse.map((u) => h('li', { class: 'vf-inuse' }, u)),
                )
              : _('no'),
          ],
          [_('Interfaces and disks'), [...d.netdevs, ...d.blockdevs].join(', ') || '-'],
        ]),
      ),
      card(
        rule ? _('Configured rule') : _('Configuration'),
        'vf-rule-title',
        rule
          ? h(
              'div',
              { id: 'vf-rule' },
              dl([
                [_('Rule'), rule.rule ?? '-'],
                [_('Intent'), rule.intent ?? '-'],
                [_('Resolves to'), rule.resolved ?? rule.reason ?? '-'],
                [
                  _('Drift'),
                  h(
                    'span',
                    null,
                    label(rule.drift, DRIFT_COLOR[rule.drift] ?? 'grey'),
                    ' ',
                    rule.detail,
                  ),
                ],
                [_('Boot'), bootLabel(rule.boot)],
              ]),
            )
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
              {
                class: 'pf-c-table pf-m-compact pf-m-grid-md',
                role: 'grid',
                'aria-label': _('VFIO candidates, best first'),
                id: 'vf-candidates',
              },
              h(
                'thead',
                null,
                h(
                  'tr',
                  { role: 'row' },
                  [_('Driver'), _('Module'), _('Usable'), _('Why'), _('Alias'), _('Source')].map(
                    (t) => h('th', { role: 'columnheader', scope: 'col', class: 'pf-m-wrap' }, t),
                  ),
                ),
              ),
              h(
                'tbody',
                { role: 'rowgroup' },
                d.candidates.map((c) =>
                  h(
                    'tr',
                    { role: 'row', 'data-driver': c.driver },
                    h('td', { role: 'cell', 'data-label': _('Driver') }, c.driver),
                    h('td', { role: 'cell', 'data-label': _('Module') }, c.module),
                    h(
                      'td',
                      { role: 'cell', 'data-label': _('Usable'), 'data-col': 'usable' },
                      c.usable ? label(_('usable'), 'green') : label(_('not usable'), 'red'),
                    ),
                    h(
                      'td',
                      { role: 'cell', 'data-label': _('Why'), 'data-col': 'why' },
                      [c.reason, ...c.notes].filter(Boolean).join('; ') || '-',
                    ),
                    h(
                      'td',
                      { role: 'cell', 'data-label': _('Alias') },
                      h('span', { class: 'vf-mono' }, c.alias),
                    ),
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
              members.map((m) =>
                h(
                  'li',
                  { 'data-address': m },
                  h('span', { class: 'vf-mono' }, m),
                  ` — ${byAddress.get(m)?.driver ?? UNBOUND}`,
                  m === d.address ? ` (${_('this device')})` : '',
                ),
              ),
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
              d.hooks.map((k) =>
                h(
                  'li',
                  null,
                  h('span', { class: 'vf-mono' }, k.path),
                  ` (${k.source})`,
                  k.problem
                    ? h('span', { class: 'vf-inuse' }, ` ${_('will not run')}: ${k.problem}`)
                    : null,
                ),
              ),
            )
          : h('p', { id: 'vf-hooks' }, _('No hooks run for this device.')),
      ),
    ),
  );
}
