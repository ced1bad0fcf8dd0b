// A minimal ELF64 relocatable object holding only a .modinfo section: enough for depmod to read a
// module's name and aliases, so property tests can build real modules.alias(.bin) trees with kmod.
export function fakeKernelModule(name: string, aliases: readonly string[]): Buffer {
  const modinfo = Buffer.from(
    [`name=${name}`, ...aliases.map((a) => `alias=${a}`), 'license=GPL', ''].join('\0'),
  );
  const shstrtab = Buffer.from('\0.modinfo\0.shstrtab\0');
  const EH = 64;
  const SH = 64;
  const infoOff = EH;
  const strOff = infoOff + modinfo.length;
  const shOff = (strOff + shstrtab.length + 7) & ~7;
  const b = Buffer.alloc(shOff + 3 * SH);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // little-endian
  b[6] = 1; // EV_CURRENT
  b.writeUInt16LE(1, 16); // ET_REL
  b.writeUInt16LE(62, 18); // EM_X86_64
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(BigInt(shOff), 40);
  b.writeUInt16LE(EH, 52);
  b.writeUInt16LE(SH, 58);
  b.writeUInt16LE(3, 60); // section count
  b.writeUInt16LE(2, 62); // .shstrtab index
  modinfo.copy(b, infoOff);
  shstrtab.copy(b, strOff);
  const section = (i: number, nameOff: number, type: number, off: number, size: number) => {
    const s = shOff + i * SH;
    b.writeUInt32LE(nameOff, s);
    b.writeUInt32LE(type, s + 4);
    b.writeBigUInt64LE(BigInt(off), s + 24);
    b.writeBigUInt64LE(BigInt(size), s + 32);
    b.writeBigUInt64LE(1n, s + 48);
  };
  section(1, 1, 1 /* PROGBITS */, infoOff, modinfo.length);
  section(2, 10, 3 /* STRTAB */, strOff, shstrtab.length);
  return b;
}
