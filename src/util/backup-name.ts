// Editor backups and package-manager leftovers in a configuration directory (hooks.d,
// /etc/driverctl.d): files a tool that loads names it knows never loads, so vfioctl skips them too.
export function isBackupName(name: string): boolean {
  return (
    name.startsWith('.') ||
    name.endsWith('~') ||
    (name.startsWith('#') && name.endsWith('#')) ||
    /\.(dpkg-[a-z]+|rpm[a-z]+|ucf-[a-z]+|swp|bak|orig|old|save)$/.test(name)
  );
}
