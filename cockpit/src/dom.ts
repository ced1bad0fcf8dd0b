// A small element builder: the page is plain DOM with PatternFly's CSS classes. Text goes in as
// text nodes (never innerHTML), so nothing vfioctl prints can become markup.
type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, '').toLowerCase(), v);
    else if (k === 'class') el.className = String(v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else
      el.appendChild(
        typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c,
      );
  }
}

export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
/** A unique id for label/aria wiring. */
export const uid = (prefix: string): string => `${prefix}-${++ids}`;

export type LabelColor = 'green' | 'red' | 'orange' | 'blue' | 'grey' | 'purple' | 'cyan';
export const label = (text: string, color: LabelColor = 'grey'): HTMLElement =>
  h(
    'span',
    { class: `pf-c-label pf-m-${color}` },
    h('span', { class: 'pf-c-label__content' }, text),
  );

export const card = (title: string, headingId: string, ...body: Child[]): HTMLElement =>
  h(
    'section',
    { class: 'pf-c-card', 'aria-labelledby': headingId },
    h(
      'div',
      { class: 'pf-c-card__title' },
      h('h2', { class: 'pf-c-title pf-m-lg', id: headingId }, title),
    ),
    h('div', { class: 'pf-c-card__body' }, ...body),
  );

export const alert = (
  variant: 'danger' | 'warning' | 'info' | 'success',
  title: string,
  ...body: Child[]
): HTMLElement =>
  h(
    'div',
    {
      class: `pf-c-alert pf-m-inline pf-m-${variant}`,
      role: variant === 'danger' ? 'alert' : null,
    },
    h(
      'p',
      { class: 'pf-c-alert__title' },
      h('span', { class: 'pf-u-screen-reader' }, `${variant} alert: `),
      title,
    ),
    body.length ? h('div', { class: 'pf-c-alert__description' }, ...body) : null,
  );

export const button = (
  text: string,
  variant: 'primary' | 'secondary' | 'danger' | 'link' | 'tertiary',
  onClick: () => void,
  extra: Attrs = {},
): HTMLButtonElement =>
  h(
    'button',
    { type: 'button', class: `pf-c-button pf-m-${variant}`, onclick: onClick, ...extra },
    text,
  );
