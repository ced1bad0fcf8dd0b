// Actions: a --dry-run preview of the exact steps and every refusal, then a confirmation; --group
// when the group is not viable; --force only behind a forced preview and a second confirmation.
import { alert, button, h, replace, uid } from './dom';
import {
  ACTION_LABELS,
  actionArgs,
  exitMeaning,
  judgePreview,
  stderrLines,
  type ActionOutput,
  type ActionRequest,
  type Result,
} from './logic';
import { _, operation, reload, state, tracked } from './app';

function resultBlock(r: Result, dryRun: boolean): HTMLElement {
  const head = `${r.address}: ${r.status}${r.target ? ` → ${r.target}` : ''}${r.driver ? ` (${_('now')} ${r.driver})` : ''}`;
  return h(
    'div',
    { class: 'vf-stack', 'data-result': r.address, 'data-status': r.status },
    h(
      'h3',
      { class: 'pf-c-title pf-m-md' },
      head,
      r.phase
        ? h('span', { class: 'vf-muted' }, ` · ${r.phase}${r.rule ? `, ${r.rule}` : ''}`)
        : null,
    ),
    r.steps.length
      ? h(
          'ol',
          {
            class: 'vf-steps',
            'aria-label': dryRun ? _('Steps that would be taken') : _('Steps taken'),
          },
          r.steps.map((s) =>
            h(
              'li',
              null,
              s.description,
              !dryRun ? (s.done ? ' ✓' : ' —') : null,
              s.error ? h('span', { class: 'vf-inuse' }, ` ${s.error}`) : null,
            ),
          ),
        )
      : null,
    r.refusals.map((x) =>
      h(
        'div',
        { 'data-refusal': x.check },
        alert(
          'danger',
          `${_('Refused')}: ${x.check}`,
          h('p', null, x.message),
          h(
            'p',
            { class: 'vf-muted' },
            x.forceable && x.check !== 'vfio-user'
              ? _('A forced bind may override this.')
              : _('This cannot be overridden.'),
          ),
        ),
      ),
    ),
    r.warnings.map((w) => alert('warning', w)),
    r.error && r.refusals.length === 0 ? alert('danger', r.error) : null,
  );
}

function outputBlock(
  out: ActionOutput | null,
  code: number,
  stderr: string,
  dryRun: boolean,
): HTMLElement {
  const lines = stderrLines(stderr);
  if (!out)
    return alert(
      'danger',
      `vfioctl: ${exitMeaning(code)}`,
      lines.map((l) => h('p', null, l)),
    );
  return h(
    'div',
    { class: 'vf-stack' },
    out.results.map((r) => resultBlock(r, dryRun)),
    (out.skipped ?? []).map((s) => alert('info', `${s.address} ${_('skipped')}`, s.reason)),
    (out.warnings ?? []).map((w) => alert('warning', w)),
    lines.length
      ? alert(
          'info',
          _('vfioctl says'),
          lines.map((l) => h('p', null, l)),
        )
      : null,
    out.results.length === 0 ? h('p', null, _('Nothing to do.')) : null,
  );
}

/** `after`: redraws the view once a real run is done (the dialog stays open over it). */
export async function actionDialog(
  first: ActionRequest,
  after: () => Promise<void>,
): Promise<void> {
  if (state.dialogOpen) return;
  state.dialogOpen = true;
  const opener = document.activeElement as HTMLElement | null;
  const titleId = uid('vf-dlg-title');
  const title = h('h1', { class: 'pf-c-modal-box__title vf-wrap', id: titleId });
  const body = h('div', { class: 'pf-c-modal-box__body', 'aria-live': 'polite' });
  const footer = h('footer', { class: 'pf-c-modal-box__footer vf-actions' });
  const box = h(
    'div',
    {
      class: 'pf-c-modal-box pf-m-md vf-modal',
      role: 'dialog',
      'aria-modal': 'true',
      'aria-labelledby': titleId,
      id: 'vf-dialog',
    },
    h('header', { class: 'pf-c-modal-box__header' }, title),
    body,
    footer,
  );
  const backdrop = h('div', { class: 'pf-c-backdrop' }, h('div', { class: 'pf-l-bullseye' }, box));
  let busy = false;
  const close = () => {
    if (busy) return;
    backdrop.remove();
    state.dialogOpen = false;
    // The detail is redrawn after a run: focus its button for the same action, else the opener.
    const again = opener?.isConnected
      ? opener
      : (document.querySelector<HTMLElement>(`[data-action="${first.kind}"]`) ??
        document.getElementById('vf-detail-title'));
    again?.focus();
  };
  backdrop.addEventListener('keydown', (e: KeyboardEvent) => {
    if (e.key === 'Escape') close();
    if (e.key === 'Tab') {
      // Keep keyboard focus inside the dialog.
      const f = [
        ...box.querySelectorAll<HTMLElement>(
          'button:not([disabled]), input:not([disabled]), a[href]',
        ),
      ];
      if (f.length === 0) return;
      const i = f.indexOf(document.activeElement as HTMLElement);
      if (e.shiftKey && i <= 0) e.preventDefault(), f[f.length - 1]!.focus();
      else if (!e.shiftKey && i === f.length - 1) e.preventDefault(), f[0]!.focus();
    }
  });
  document.body.appendChild(backdrop);
  const cancel = () => button(_('Cancel'), 'link', close, { 'data-dialog': 'cancel' });

  const run = (req: ActionRequest, dryRun: boolean) => operation(() => step(req, dryRun));
  const step = async (req: ActionRequest, dryRun: boolean) => {
    const labels = ACTION_LABELS[req.kind];
    replace(
      title,
      dryRun
        ? `${_('Preview')}: ${_(labels.title)}${req.group ? ` (${_('whole IOMMU group')})` : ''}${req.force ? ` (${_('forced')})` : ''}`
        : `${_(labels.title)}: ${_('result')}`,
    );
    replace(
      body,
      h(
        'p',
        null,
        dryRun ? _('Checking what would happen (dry run, nothing is changed)…') : _('Working…'),
      ),
    );
    replace(footer);
    busy = true;
    box.setAttribute('aria-busy', 'true');
    const r = await tracked<ActionOutput>(
      dryRun ? _('Preview') : _(labels.run),
      actionArgs(req, dryRun),
    ).catch((e: Error) => ({ code: -1, data: null, stderr: e.message }));
    busy = false;
    box.setAttribute('aria-busy', 'false');
    replace(
      body,
      h(
        'p',
        { class: 'vf-muted' },
        `vfioctl ${actionArgs(req, dryRun).join(' ')}: ${exitMeaning(r.code)}`,
      ),
      outputBlock(r.data, r.code, r.stderr, dryRun),
    );
    if (!dryRun) {
      replace(footer, button(_('Close'), 'primary', close, { 'data-dialog': 'close' }));
      (footer.firstElementChild as HTMLElement).focus();
      await reload();
      await after();
      return;
    }
    const v = r.data ? judgePreview(req, r.data) : null;
    const buttons: HTMLElement[] = [];
    if (v?.canRun && !req.force)
      buttons.push(
        button(_(labels.run), 'primary', () => void run(req, false), { 'data-dialog': 'confirm' }),
      );
    if (v?.canRun && req.force) {
      // The second confirmation: the refusals being overridden, acknowledged explicitly.
      const checks = [...new Set(v.refusals.map((x) => x.check))];
      const go = button(
        `${_('Force')} ${_(labels.run).toLowerCase()}`,
        'danger',
        () => void run(req, false),
        { 'data-dialog': 'force-confirm', disabled: true },
      );
      const ackId = uid('vf-ack');
      buttons.push(
        h(
          'div',
          { class: 'pf-c-check' },
          h('input', {
            id: ackId,
            class: 'pf-c-check__input',
            type: 'checkbox',
            'data-dialog': 'force-ack',
            onchange: (e: Event) => (go.disabled = !(e.target as HTMLInputElement).checked),
          }),
          h(
            'label',
            { class: 'pf-c-check__label', for: ackId },
            `${_('I understand that this overrides')}: ${checks.join(', ') || _('no check')}`,
          ),
        ),
        go,
      );
    }
    if (v?.offerGroup)
      buttons.push(
        button(
          _('Preview moving the whole IOMMU group'),
          'secondary',
          () => void run({ ...req, group: true }, true),
          { 'data-dialog': 'group' },
        ),
      );
    if (v?.offerForce)
      buttons.push(
        button(
          _('Preview a forced bind…'),
          'secondary',
          () => void run({ ...req, force: true }, true),
          { 'data-dialog': 'force' },
        ),
      );
    if (v?.noop) body.appendChild(alert('info', _('Already there: nothing would change.')));
    buttons.push(cancel());
    replace(footer, buttons);
    (footer.querySelector('button:not([disabled])') as HTMLElement | null)?.focus();
  };
  await run(first, true);
}
