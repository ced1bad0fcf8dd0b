// A minimal writer for the "newc" cpio format the kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst).

export type CpioEntry =
  | { readonly kind: 'dir'; readonly path: string; readonly mode?: number }
  | { readonly kind: 'file'; readonly path: string; readonly data: Buffer; readonly mode?: number }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string }
  | {
      readonly kind: 'chardev';
      readonly path: string;
      readonly major: number;
      readonly minor: number;
      readonly mode?: number;
    };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function record(
  ino: number,
  mode: number,
  name: string,
  data: Buffer,
  rdev: [number, number] = [0, 0],
  nlink = 1,
): Buffer {
  const nameBuf = Buffer.from(name + '\0', 'utf8');
  const fields = [
    ino,
    mode,
    0,
    0,
    nlink,
    0,
    data.length,
    0,
    0,
    rdev[0],
    rdev[1],
    nameBuf.length,
    0,
  ];
  const header = Buffer.from(
    '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join(''),
    'ascii',
  );
  return Buffer.concat([
    header,
    nameBuf,
    Buffer.alloc(pad4(header.length + nameBuf.length)),
    data,
    Buffer.alloc(pad4(data.length)),
  ]);
}

/**
 * The archive bytes (uncompressed). Paths are relative to the archive root, without a leading `/`.
 */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    switch (e.kind) {
      case 'dir':
        parts.push(record(ino++, S_IFDIR | (e.mode ?? 0o755), name, Buffer.alloc(0), [0, 0], 2));
        break;
      case 'file':
        parts.push(record(ino++, S_IFREG | (e.mode ?? 0o644), name, e.data));
        break;
      case 'symlink':
        parts.push(record(ino++, S_IFLNK | 0o777, name, Buffer.from(e.target, 'utf8')));
        break;
      case 'chardev':
        parts.push(
          record(ino++, S_IFCHR | (e.mode ?? 0o600), name, Buffer.alloc(0), [e.major, e.minor]),
        );
        break;
    }
  }
  parts.push(record(0, 0, 'TRAILER!!!', Buffer.alloc(0), [0, 0], 1));
  return Buffer.concat(parts);
}
