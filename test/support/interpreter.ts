// How a node script's interpreter line starts it, as an argv for spawn with this very node
// (process.execPath, not whichever node PATH finds). The installed command's line gives node a
// flag (`#!/usr/bin/env -S node --no-sparkplug`, scripts/bundle.mjs), and V8 takes a code cache
// only under the flags it was made with: started without them, the launcher runs uncached.
import * as fs from 'node:fs';

const LINE = /^#!(?:\/usr\/bin\/env (?:-S )?node|\/\S*\/node)((?: [^\s]+)*) *$/;

/** The flags `file`'s interpreter line gives node; null when it has no node interpreter line. */
export function interpreterFlags(file: string): string[] | null {
  const fd = fs.openSync(file, 'r');
  let head: string;
  try {
    const b = Buffer.alloc(256);
    head = b.toString('latin1', 0, fs.readSync(fd, b, 0, b.length, 0));
  } finally {
    fs.closeSync(fd);
  }
  const m = LINE.exec(head.split('\n', 1)[0]!);
  return m ? m[1]!.split(' ').filter(Boolean) : null;
}

/**
 * [node, its flags, file]: what the kernel runs for `file ...`, with this process's node; a
 * script without an interpreter line (test machinery) is started as `node file`.
 */
export function nodeArgv(file: string): string[] {
  return [process.execPath, ...(interpreterFlags(file) ?? []), file];
}
