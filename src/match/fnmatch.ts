// fnmatch(3) without flags, as libkmod's index_searchwild uses it for modules.alias patterns:
// `*` any run (including `/`), `?` one character, `[...]` a bracket expression with ranges and
// `!`/`^` negation. Case-sensitive. Compiled to a RegExp once per pattern.

const cache = new Map<string, RegExp>();

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

export function fnmatch(pattern: string, s: string): boolean {
  let re = cache.get(pattern);
  if (re === undefined) {
    const src = globToRegExpSource(pattern);
    // An unterminated bracket never matches (glibc treats `[` literally; kmod rejects it earlier).
    re = src === null ? /(?!)/ : new RegExp(src);
    cache.set(pattern, re);
  }
  return re.test(s);
}

/**
 * kmod's alias_normalize(): `-` becomes `_` outside bracket expressions; an unmatched `]` or an
 * unterminated `[` makes the alias invalid (depmod skips such patterns with a warning).
 */
export function aliasNormalize(alias: string): string | null {
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
