// vfioctl's Cockpit page: the device table, a device's detail, bind/unbind/set/unset with a
// --dry-run preview first, host readiness (doctor) and configuration status. Everything it knows
// comes from `vfioctl ... --json` (cli.ts). Views: list.ts, detail.ts, dialog.ts; state: app.ts.
import { pageConfig } from './cli';
import { h, replace } from './dom';
import { _, reload, setup, state, watchState } from './app';
import { renderList } from './list';
import { renderDetail } from './detail';

let content: HTMLElement;

function render(): void {
  const p = cockpit.location.path;
  if (p[0] === 'device' && p[1]) {
    // The detail re-reads its device; a refresh while the dialog is open must not reset it.
    if (!state.dialogOpen) void renderDetail(content, p[1]);
  } else renderList(content);
}

function init(): void {
  const app = document.getElementById('app')!;
  const progress = h('div', {
    class: 'vf-progress',
    role: 'status',
    'aria-live': 'polite',
    id: 'vf-progress',
    hidden: true,
  });
  content = h('div', { class: 'vf-main', id: 'vf-content' });
  replace(
    app,
    h(
      'main',
      { class: 'pf-c-page__main', id: 'vf-main' },
      h(
        'section',
        { class: 'pf-c-page__main-section pf-m-light' },
        h('h1', { class: 'pf-c-title pf-m-2xl' }, _('VFIO devices')),
        progress,
      ),
      h('section', { class: 'pf-c-page__main-section' }, content),
    ),
  );
  setup(pageConfig(), progress, render);
  cockpit.addEventListener('locationchanged', render);
  watchState();
  void reload();
}

document.addEventListener('DOMContentLoaded', init);
