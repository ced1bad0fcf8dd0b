// fnmatch(3) without flags, as libkmod's index_searchwild uses it for modules.alias patterns:
// `*` any run (including `/`), `?` one character, `[...]` a bracket expression with ranges and
// `!`/`^` negation. Case-sensitive. Compiled once per pattern (a RegExp, or pieces for `*`-only).

/** A compiled pattern: a RegExp, or for `*`-only globs the literal pieces between the stars. */
type Matcher = RegExp | readonly string[];

const cache = new Map<string, Matcher>();

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? '\\' + c : c;
}

/** Translate a glob to an anchored RegExp source. Returns null for an unterminated bracket. */
export function globToRegExpSource(glob: string): string | null {
  let out = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') out += '[\\s\\S]*';
    else if (c === '?') out += '[\\s\\S]';
    else if (c === '[') {
      let j = i + 1;
      let negate = false;
      if (glob[j] === '!' || glob[j] === '^') {
        negate = true;
        j++;
      }
      // A `]` right after `[` or `[!` is a literal member (POSIX).
      let body = '';
      let first = true;
      for (; j < glob.length && (first || glob[j] !== ']'); j++, first = false) {
        const m = glob[j]!;
        if (glob[j + 1] === '-' && glob[j + 2] !== undefined && glob[j + 2] !== ']') {
          body += escapeRe(m) + '-' + escapeRe(glob[j + 2]!);
          j += 2;
        } else body += escapeRe(m);
      }
      if (j >= glob.length) return null;
      out += (negate ? '[^' : '[') + body + ']';
      i = j;
    } else out += escapeRe(c);
  }
  return out + '$';
}

/**
 * `*`-only glob (every modules.alias PCI pattern but a few): the first piece is a prefix, the
 * last a suffix, the others found left to right; leftmost matching of each piece is optimal
 * when `*` matches any run. Saves compiling a RegExp per pattern in a short-lived process.
 */
function starsMatch(pieces: readonly string[], s: string): boolean {
  const last = pieces.length - 1;
  if (last === 0) return s === pieces[0];
  const head = pieces[0]!;
  const tail = pieces[last]!;
  if (s.length < head.length + tail.length || !s.startsWith(head) || !s.endsWith(tail))
    return false;
  let at = head.length;
  const end = s.length - tail.length;
  for (let i = 1; i < last; i++) {
    const p = pieces[i]!;
    const found = s.indexOf(p, at);
    if (found < 0 || found + p.length > end) return false;
    at = found + p.length;
  }
  return true;
}

export function fnmatch(pattern: string, s: string): boolean {
  let m = cache.get(pattern);
  if (m === undefined) {
    if (!pattern.includes('?') && !pattern.includes('[')) m = pattern.split('*');
    else {
      const src = globToRegExpSource(pattern);
      // An unterminated bracket never matches (glibc treats `[` literally; kmod rejects it
      // earlier).
      m = src === null ? /(?!)/ : new RegExp(src);
    }
    cache.set(pattern, m);
  }
  return m instanceof RegExp ? m.test(s) : starsMatch(m, s);
}

const NORMALIZE_CHARS = /[-[\]]/;

/**
 * kmod's alias_normalize(): `-` becomes `_` outside bracket expressions; an unmatched `]` or an
 * unterminated `[` makes the alias invalid (depmod skips such patterns with a warning).
 */
export function aliasNormalize(alias: string): string | null {
  // Nearly every alias and modalias has neither: itself, without a copy built a character at a
  // time (every index entry and every modalias asked about passes here).
  if (!NORMALIZE_CHARS.test(alias)) return alias;
  let out = '';
  for (let i = 0; i < alias.length; i++) {
    const c = alias[i]!;
    if (c === '-') out += '_';
    else if (c === ']') return null;
    else if (c === '[') {
      const end = alias.indexOf(']', i);
      if (end < 0) return null;
      out += alias.slice(i, end + 1);
      i = end;
    } else out += c;
  }
  return out;
}

/** Module names compare with `-` and `_` equal (kmod's modname_normalize). */
export function moduleNormalize(name: string): string {
  return name.replace(/-/g, '_');
}
